/**
 * Write throughput of MemoryStore persistence on this machine: operations per second with the vault's
 * fsync policies 'always' and 'everysec', and without persistence for reference. Prints numbers and
 * ratios; it is not a test.
 *
 *   npm run build && npx tsc -p bench/tsconfig.json && node dist/bench/persistence-throughput.js [--seconds 3]
 *
 * Workloads, each for a fixed time on a fresh vault:
 * - kvSet, 1 in flight: every write waits for the previous one (the latency of one commit);
 * - kvSet, 64 in flight: 64 concurrent writers, so group commit shares each write and fsync;
 * - request, 64 in flight: what a request with a session costs the store under autoRotation: resolve
 *   (refreshes lastSeenAt; the first presentation of a token also gives its predecessor the grace
 *   period) then commit with a patch and a rotation.
 */
import { randomBytes } from 'node:crypto'
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MemoryStore } from 'fastify-xems'

type Mode = 'memory' | 'everysec' | 'always'

const MODES: Mode[] = ['memory', 'everysec', 'always']
const HOUR = 3_600_000
const DATA = { user: JSON.stringify({ id: 'u1', name: 'Ada Lovelace', email: 'ada@example.test', roles: ['reader', 'writer'], plan: 'pro' }) }

const secondsArg = process.argv.indexOf('--seconds')
const SECONDS = secondsArg === -1 ? 3 : Number(process.argv[secondsArg + 1])

/** Record ids and token keys are 16-byte hashes (lib/session/token.ts); random ones cost the store the same. */
const key = (): string => randomBytes(16).toString('base64url')
/** A grace box is 49 bytes (version, nonce, check): 66 base64url characters. */
const BOX = 'x'.repeat(66)
/**
 * No grace: each rotated token is dropped at the next rotation. With one, a worker this fast would fill
 * its record (MAX_PAST_TOKENS rotated tokens within their grace) and later rotations would be refused.
 */
const GRACE = 0
const UNSEEN = 600_000

/** Runs `op` from `concurrency` loops for SECONDS; returns operations per second. */
async function measure (concurrency: number, op: (worker: number) => Promise<void>): Promise<number> {
  let count = 0
  const started = performance.now()
  const end = started + SECONDS * 1000
  await Promise.all(Array.from({ length: concurrency }, async (_, worker) => {
    while (performance.now() < end) {
      await op(worker)
      count++
    }
  }))
  return count / ((performance.now() - started) / 1000)
}

async function openStore (mode: Mode, dir: string): Promise<MemoryStore> {
  if (mode === 'memory') return await MemoryStore.open()
  return await MemoryStore.open({ persistence: { path: dir, secret: randomBytes(32), fsync: mode } })
}

interface Row {
  workload: string
  results: Record<Mode, number>
}

async function run (): Promise<void> {
  const workloads: Array<{ name: string, concurrency: number, setup: (store: MemoryStore) => Promise<(worker: number) => Promise<void>> }> = [
    {
      name: 'kvSet, 1 in flight',
      concurrency: 1,
      setup: async (store) => {
        let i = 0
        return async () => { await store.kvSet('bench', `k${i++ % 10_000}`, '{"v":1}', HOUR, Date.now()) }
      }
    },
    {
      name: 'kvSet, 64 in flight',
      concurrency: 64,
      setup: async (store) => {
        let i = 0
        return async () => { await store.kvSet('bench', `k${i++ % 10_000}`, '{"v":1}', HOUR, Date.now()) }
      }
    },
    {
      name: 'request (resolve + commit with rotation), 64 in flight',
      concurrency: 64,
      setup: async (store) => {
        const sessions: Array<{ id: string, key: string }> = []
        const now = Date.now()
        for (let w = 0; w < 64; w++) {
          const id = key()
          const tokenKey = key()
          await store.create({ id, sandbox: 'auth-active', tokenKey, data: DATA, now, idleTtl: HOUR, absoluteExpiresAt: now + 24 * HOUR })
          sessions.push({ id, key: tokenKey })
        }
        let n = 0
        return async (worker) => {
          const session = sessions[worker]!
          const at = Date.now()
          const resolved = await store.resolve({ id: session.id, tokenKey: session.key, now: at, gracePeriod: GRACE, revokeOnReuse: true })
          if (resolved.status !== 'live') throw new Error(`unexpected ${resolved.status}`)
          const newKey = key()
          const committed = await store.commit({ id: session.id, tokenKey: session.key, patch: { n: String(n++) }, rotate: { newKey, box: BOX, unseenWindow: UNSEEN }, now: at })
          if (committed.status !== 'ok' || !committed.rotated) throw new Error(`no rotation: ${JSON.stringify(committed)}`)
          session.key = newKey
        }
      }
    }
  ]

  console.log(`MemoryStore persistence throughput, ${SECONDS} s per cell, Node ${process.version}, ${tmpdir()}`)
  console.log(`fdatasync latency of this disk: median ${fsyncLatency().toFixed(3)} ms (1 small append + fdatasync)`)
  const rows: Row[] = []
  for (const workload of workloads) {
    const results = {} as Record<Mode, number>
    for (const mode of MODES) {
      const dir = mkdtempSync(join(tmpdir(), 'xems-bench-'))
      try {
        const store = await openStore(mode, dir)
        try {
          const op = await workload.setup(store)
          await measure(workload.concurrency, op)
          results[mode] = await measure(workload.concurrency, op)
        } finally {
          await store.close()
        }
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }
    rows.push({ workload: workload.name, results })
  }

  const pad = (text: string, width: number): string => text.padStart(width)
  console.log('')
  console.log(`${'workload'.padEnd(56)}${pad('memory', 12)}${pad('everysec', 12)}${pad('always', 12)}${pad('everysec/always', 17)}${pad('memory/always', 15)}`)
  for (const { workload, results } of rows) {
    console.log(`${workload.padEnd(56)}${pad(fmt(results.memory), 12)}${pad(fmt(results.everysec), 12)}${pad(fmt(results.always), 12)}` +
      `${pad((results.everysec / results.always).toFixed(1) + '×', 17)}${pad((results.memory / results.always).toFixed(1) + '×', 15)}`)
  }
  console.log('\n(operations per second, requests per second in the request row; a warm-up pass of each cell is not counted)')
}

function fmt (opsPerSecond: number): string {
  return Math.round(opsPerSecond).toLocaleString('en-US')
}

/** Median time of one small append + fdatasync in the temp directory. */
function fsyncLatency (): number {
  const dir = mkdtempSync(join(tmpdir(), 'xems-bench-fsync-'))
  try {
    const fd = openSync(join(dir, 'probe'), 'a')
    const times: number[] = []
    const block = Buffer.alloc(200, 1)
    for (let i = 0; i < 200; i++) {
      const started = performance.now()
      writeSync(fd, block)
      fdatasyncSync(fd)
      times.push(performance.now() - started)
    }
    closeSync(fd)
    return times.sort((a, b) => a - b)[100]!
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

await run()
