/**
 * Crash safety under fsync 'always': a child process writes in a burst and reports every write the
 * store acknowledged; it is killed with SIGKILL mid-burst (possibly mid-compaction); the vault must
 * then open and hold every acknowledged write.
 *
 * This file is both the test and the child: run with XEMS_CRASH_DIR set, it is the writer.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { MemoryStore, type VaultWarning } from '../../lib/store/memory/memory-store.js'

const HOUR = 3_600_000
const WORKERS = 16
const ROTATIONS = 3
const GRACE = 2000

const childDir = process.env.XEMS_CRASH_DIR
if (childDir !== undefined) {
  await writer(childDir, process.env.XEMS_CRASH_SECRET!, Number(process.env.XEMS_CRASH_NOW))
} else {
  await parent()
}

/** The child: bursts of creates, rotations, values and counter hits, each reported once acknowledged. */
async function writer (dir: string, secret: string, now: number): Promise<void> {
  const store = await MemoryStore.open({ persistence: { path: dir, secret, fsync: 'always', compactAfter: 64 * 1024 } })
  const ack = (line: string): void => { process.stdout.write(line + '\n') }
  ack('ready')
  let next = 0
  const work = async (): Promise<void> => {
    for (;;) {
      const i = next++
      const id = `s${i}`
      let key = `k${i}.0`
      await store.create({ id, sandbox: 'auth-active', tokenKey: key, data: { r: '0' }, userId: `u${i % 7}`, now, idleTtl: HOUR, absoluteExpiresAt: now + 24 * HOUR })
      ack(`session ${id} ${key} 0`)
      for (let r = 1; r <= ROTATIONS; r++) {
        // As a request does: present the current token (its predecessor gets the grace), then rotate.
        const resolved = await store.resolve({ id, tokenKey: key, now, gracePeriod: GRACE, revokeOnReuse: false })
        if (resolved.status !== 'live') throw new Error(`the current token resolved ${resolved.status}`)
        const newKey = `k${i}.${r}`
        const result = await store.commit({ id, tokenKey: key, patch: { r: String(r) }, rotate: { newKey, box: `box${r}`, unseenWindow: HOUR }, now })
        if (result.status !== 'ok' || !result.rotated) throw new Error('rotation failed')
        key = newKey
        ack(`session ${id} ${key} ${r}`)
      }
      await store.kvSet('crash', `v${i}`, String(i), HOUR, now)
      ack(`value v${i} ${i}`)
      const { count } = await store.increment('hits', HOUR, now)
      ack(`count ${count}`)
    }
  }
  await Promise.all(Array.from({ length: WORKERS }, work))
}

async function parent (): Promise<void> {
  const { default: t } = await import('tap')

  for (let run = 0; run < 4; run++) {
    t.test(`run ${run}: SIGKILL mid-burst loses no acknowledged write`, async (t) => {
      const dir = await mkdtemp(join(tmpdir(), 'xems-crash-'))
      t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
      const secret = randomBytes(32).toString('hex')
      const now = Date.now()
      const killAfter = 200 + Math.floor(Math.random() * 3000)
      const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
        env: { ...process.env, XEMS_CRASH_DIR: dir, XEMS_CRASH_SECRET: secret, XEMS_CRASH_NOW: String(now) },
        stdio: ['ignore', 'pipe', 'pipe']
      })
      let output = ''
      let errors = ''
      let lines = 0
      child.stderr.on('data', (chunk: Buffer) => { errors += chunk.toString() })
      const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
        child.on('exit', (code, signal) => { resolve({ code, signal }) })
      })
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        lines += chunk.toString().split('\n').length - 1
        if (lines >= killAfter && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      })
      const { signal } = await exited
      t.equal(signal, 'SIGKILL', `killed mid-burst (child stderr: ${errors.slice(0, 500)})`)

      // Only complete lines were acknowledged; a line cut by the kill is ignored.
      const acked = output.split('\n').slice(0, -1)
      t.equal(acked[0], 'ready')
      const sessions = new Map<string, { key: string, r: number }>()
      const values = new Map<string, string>()
      let maxCount = 0
      for (const line of acked.slice(1)) {
        const [kind, a, b, c] = line.split(' ')
        if (kind === 'session') sessions.set(a!, { key: b!, r: Number(c) })
        else if (kind === 'value') values.set(a!, b!)
        else if (kind === 'count') maxCount = Math.max(maxCount, Number(a))
      }
      t.ok(acked.length >= killAfter, `${acked.length - 1} acknowledged writes before the kill`)

      const warnings: VaultWarning[] = []
      const store = await MemoryStore.open({ onWarning: (w) => warnings.push(w), persistence: { path: dir, secret, fsync: 'always' } })
      t.teardown(async () => { await store.close() })
      let missing = 0
      for (const [id, { key, r }] of sessions) {
        const result = await store.resolve({ id, tokenKey: key, now: now + 1, gracePeriod: GRACE, revokeOnReuse: false })
        const ok = (result.status === 'live' || result.status === 'grace') && result.session.id === id && Number(result.session.data.r) >= r
        if (!ok && missing++ < 3) t.fail(`session ${id}: acknowledged token ${key} (rotation ${r}) resolved to ${JSON.stringify(result)}`)
        if (r > 0) {
          // Its predecessor was rotated away from by an acknowledged write: still within its grace.
          const before = `${key.split('.')[0]!}.${r - 1}`
          const previous = await store.resolve({ id, tokenKey: before, now: now + 1, gracePeriod: GRACE, revokeOnReuse: false })
          if (previous.status !== 'grace' && missing++ < 3) t.fail(`session ${id}: the predecessor ${before} of an acknowledged rotation resolved to ${previous.status}`)
        }
        const stranger = await store.resolve({ id, tokenKey: 'never-issued', now: now + 1, gracePeriod: GRACE, revokeOnReuse: false })
        if (stranger.status !== 'reused' && missing++ < 3) t.fail(`session ${id}: a key it never had resolved to ${stranger.status}`)
      }
      for (const [name, value] of values) {
        const stored = await store.kvGet('crash', name, now + 1)
        if (stored !== value && missing++ < 6) t.fail(`value ${name}: expected ${value}, got ${String(stored)}`)
      }
      t.equal(missing, 0, `all ${sessions.size} sessions (at their last acknowledged rotation, with its predecessor in grace) and ${values.size} values are there`)
      const { count } = await store.increment('hits', HOUR, now + 1)
      t.ok(count > maxCount, `the counter kept at least its ${maxCount} acknowledged hits (now ${count - 1})`)
      t.equal(warnings.length, 1, 'the crash is reported once')
      t.ok(['FST_XEMS_VAULT_TORN_TAIL', 'FST_XEMS_VAULT_UNCLEAN'].includes(warnings[0]?.code ?? ''), 'as a torn tail or an unclean close')
      t.comment(`expected vault warning after the kill, captured: ${warnings.map((w) => w.code).join(', ')}`)
    })
  }
}
