/**
 * Replay is exact: a persistent store that is restarted again and again, and compacted every few
 * kilobytes while operations run in parallel, answers every operation exactly as a store that never
 * left memory. A restart drops what has expired, as a full sweep does, so the reference is swept at
 * each restart and neither store sweeps on its own (a sweep's timing is visible: kvDel and destroy
 * answer true for an expired entry not yet swept). listUser answers in no promised order.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ROTATED_TOKENS_KEPT, type SessionInfo, type SessionStore } from '../../lib/store/contract.js'
import { MemoryStore, type FsyncPolicy, type VaultWarning } from '../../lib/store/memory-store.js'
import { generateToken, tokenKey } from '../../lib/token.js'

type Op = (store: SessionStore) => Promise<unknown>

function prng (seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const SANDBOXES = ['auth-active', 'otp-pending']
const USERS = ['u0', 'u1', 'u2', 'u3']

for (const [seed, fsync] of [[1, 'always'], [2, 'everysec'], [7, 'always']] as Array<[number, FsyncPolicy]>) {
  t.test(`seed ${seed}, fsync ${fsync}: restarts and compactions change no answer`, async (t) => {
    const random = prng(seed)
    const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!
    const chance = (p: number): boolean => random() < p
    let now = Date.now()
    const clock = (): number => now
    const dir = await mkdtemp(join(tmpdir(), 'xems-replay-'))
    t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
    const warnings: VaultWarning[] = []
    const key = randomBytes(32)
    const open = async (): Promise<MemoryStore> => await MemoryStore.open({
      clock,
      sweepInterval: '20d',
      onWarning: (w) => warnings.push(w),
      persistence: { path: dir, secret: key, fsync, compactAfter: 2048 }
    })
    const reference = new MemoryStore({ clock, sweepInterval: '20d' })
    let persistent = await open()
    const sessions: Array<{ sid: string, keys: string[] }> = []
    const allKeys = (): string[] => sessions.flatMap((s) => s.keys)

    function nextOp (): Op {
      const roll = random()
      if (roll < 0.06 || sessions.length === 0) {
        const sid = `sid${sessions.length}`
        const key = tokenKey(generateToken())
        sessions.push({ sid, keys: [key] })
        const userId = chance(0.7) ? pick(USERS) : undefined
        const sandbox = pick(SANDBOXES)
        const idleTtl = 500 + Math.floor(random() * 20_000)
        const absolute = now + 1000 + Math.floor(random() * 60_000)
        const at = now
        return async (s) => { await s.create({ sid, sandbox, tokenKey: key, data: { a: `"${sid}"` }, now: at, idleTtl, absoluteExpiresAt: absolute, ...(userId === undefined ? {} : { userId }) }) }
      }
      // Favour recent sessions, so that some rotate past the 16 tokens remembered.
      const session = chance(0.6) ? sessions.at(-1)! : pick(sessions)
      const key = chance(0.85) ? session.keys.at(-1)! : pick(session.keys)
      const at = now
      if (roll < 0.35) {
        const revokeOnReuse = chance(0.5)
        const sandbox = chance(0.5) ? pick(SANDBOXES) : undefined
        return async (s) => await s.resolve({ tokenKey: key, now: at, revokeOnReuse, ...(sandbox === undefined ? {} : { sandbox }) })
      }
      if (roll < 0.55) {
        const patch = chance(0.6) ? { [`k${Math.floor(random() * 5)}`]: chance(0.2) ? null : String(random()) } : null
        let rotate = null
        if (chance(0.7)) {
          const newKey = tokenKey(generateToken())
          session.keys.push(newKey)
          rotate = { newKey, box: `box-${newKey.slice(0, 6)}`, graceUntil: at + Math.floor(random() * 3000) }
        }
        return async (s) => await s.commit({ sid: session.sid, tokenKey: key, patch, rotate, now: at })
      }
      if (roll < 0.6) {
        const newKey = tokenKey(generateToken())
        session.keys.push(newKey)
        const from = pick(SANDBOXES)
        const to = pick(SANDBOXES)
        const data = chance(0.5) ? { m: '"migrated"' } : null
        const userId = chance(0.5) ? pick(USERS) : undefined
        return async (s) => await s.migrate({ sid: session.sid, from, to, newKey, data, idleTtl: 10_000, now: at, ...(userId === undefined ? {} : { userId }) })
      }
      if (roll < 0.63) return async (s) => await s.destroy(session.sid)
      if (roll < 0.65) {
        const user = pick(USERS)
        const except = chance(0.5) ? session.sid : undefined
        return async (s) => await s.revokeUser(user, at, except)
      }
      if (roll < 0.68) {
        const user = pick(USERS)
        return async (s) => sortedInfos(await s.listUser(user, at))
      }
      const sandbox = pick(['s1', 's2'])
      const name = `v${Math.floor(random() * 20)}`
      const value = String(random())
      const ttl = 200 + Math.floor(random() * 10_000)
      const counter = `c${Math.floor(random() * 5)}`
      const kv: Op[] = [
        async (s) => { await s.kvSet(sandbox, name, value, ttl, at) },
        async (s) => await s.kvGet(sandbox, name, at),
        async (s) => await s.kvDel(sandbox, name),
        async (s) => await s.kvAdd(sandbox, name, value, ttl, at),
        async (s) => await s.kvTake(sandbox, name, at),
        async (s) => await s.increment(counter, ttl, at),
        async (s) => await s.increment(counter, ttl, at),
        async (s) => { await s.resetCounter(counter) }
      ]
      return pick(kv)
    }

    let mismatches = 0
    let restarts = 0
    for (let group = 0; group < 800; group++) {
      const ops = Array.from({ length: 1 + Math.floor(random() * 8) }, nextOp)
      const expected = JSON.stringify(await Promise.all(ops.map(async (op) => await op(reference))))
      const actual = JSON.stringify(await Promise.all(ops.map(async (op) => await op(persistent))))
      if (expected !== actual && mismatches++ < 3) t.equal(actual, expected, `group ${group}`)
      now += Math.floor(random() * 400)
      if (chance(0.05)) {
        await persistent.close()
        persistent = await open()
        reference.sweep(now)
        restarts++
      }
    }
    t.equal(mismatches, 0, `every answer identical across ${restarts} restarts`)
    t.ok(sessions.some((s) => s.keys.length > ROTATED_TOKENS_KEPT + 2), `a session rotated ${Math.max(...sessions.map((s) => s.keys.length)) - 1} times`)
    const journal = (await readdir(dir)).find((name) => name.startsWith('xems.journal.'))!
    const generations = Number(journal.split('.').at(-1))
    t.ok(generations - restarts - 1 >= 5, `and ${generations - restarts - 1} compactions while running`)

    // Probe the final state with both, after one more restart.
    await persistent.close()
    persistent = await open()
    reference.sweep(now)
    const probe = async (s: SessionStore): Promise<string> => JSON.stringify([
      await Promise.all(allKeys().map(async (key) => await s.resolve({ tokenKey: key, now, revokeOnReuse: false }))),
      await Promise.all(['s1', 's2'].flatMap((sb) => Array.from({ length: 20 }, async (_, i) => await s.kvGet(sb, `v${i}`, now)))),
      await Promise.all(USERS.map(async (user) => sortedInfos(await s.listUser(user, now)))),
      await Promise.all(Array.from({ length: 5 }, async (_, i) => await s.increment(`c${i}`, 1000, now)))
    ])
    t.equal(await probe(persistent), await probe(reference), 'the final states agree')
    t.same(persistent.size, reference.size, 'and hold the same number of live entries')
    t.same(warnings, [], 'no warning')
    await persistent.close()
    await reference.close()
  })
}


function sortedInfos (infos: SessionInfo[]): SessionInfo[] {
  return infos.sort((a, b) => a.sid < b.sid ? -1 : 1)
}
