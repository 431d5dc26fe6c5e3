/**
 * Issue 11: a MemoryStore session costs about 290 heap bytes (bench/memory.ts: 1 M sessions within
 * 400 MB RSS).
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { MemoryStore } from '../../lib/store/memory/memory-store.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
function heapUsed (): number {
  for (let i = 0; i < 3; i++) gc()
  return process.memoryUsage().heapUsed
}

const HOUR = 3_600_000
const N = 50_000
/** A record id or token key as the engine makes them: 22 characters of a digest. */
const key = (prefix: string, i: number): string => `${prefix}${String(i).padStart(20, '0')}`.slice(-22)

t.test(`${N.toLocaleString('en')} sessions with the benchmark's data cost at most 330 heap bytes each (382 before)`, async (t) => {
  const store = new MemoryStore({ sweepInterval: '1h' })
  t.teardown(async () => { await store.close() })
  const now = Date.now()
  const before = heapUsed()
  for (let i = 0; i < N; i++) {
    const user = `u-${String(i).padStart(7, '0')}`
    // The engine hands data over as JSON text per key, built by JSON.stringify.
    const data = { user: JSON.stringify({ id: user, name: 'Ada Lovelace', email: 'ada@example.test', roles: ['reader', 'writer'], plan: 'pro' }) }
    await store.create({ id: key('id', i), sandbox: 'auth-active', tokenKey: key('tk', i), data, now, idleTtl: HOUR, absoluteExpiresAt: now + 24 * HOUR })
  }
  const perSession = (heapUsed() - before) / N
  t.equal(store.size.sessions, N)
  t.ok(perSession <= 330, `${perSession.toFixed(0)} heap bytes per session (408 before, on Node 20)`)
  const resolved = await store.resolve({ id: key('id', 7), tokenKey: key('tk', 7), now, gracePeriod: 1000, revokeOnReuse: false })
  t.equal(resolved.status, 'live')
  if (resolved.status === 'live') t.equal(JSON.parse(resolved.session.data.user!).id, 'u-0000007')
})
