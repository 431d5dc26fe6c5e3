/**
 * What one Map.set / Map.delete can cost when a JavaScript Map of a million entries grows or shrinks:
 * V8 rehashes the whole table in that one call. MemoryStore keeps its sessions (one record each, by
 * record id) in such Maps, so a login that crosses a power of two (or a sweep step that empties one)
 * stalls the event loop. Compared with the same keys spread over 64 smaller Maps (by the key's first
 * character).
 *
 * `npm run bench:build && node --expose-gc dist/bench/map-rehash.js [--entries 1000000]`. Each layout runs
 * three times; the figure is the smallest of the three longest calls, which leaves out the machine's
 * other load (preemption) but keeps what recurs every time (the rehash).
 */
import { randomBytes } from 'node:crypto'
import { PerformanceObserver } from 'node:perf_hooks'

const i = process.argv.indexOf('--entries')
const ENTRIES = i === -1 ? 1_000_000 : Number(process.argv[i + 1])
const gcs: Array<{ start: number, ms: number }> = []
new PerformanceObserver((list) => { for (const e of list.getEntries()) gcs.push({ start: e.startTime, ms: e.duration }) }).observe({ entryTypes: ['gc'] })
const gcIn = (start: number, end: number): boolean => gcs.some((g) => g.start >= start - 0.5 && g.start <= end)

/** Record ids: 16 bytes, 22 base64url characters (lib/session/token.ts). */
const keys = Array.from({ length: ENTRIES }, () => randomBytes(16).toString('base64url'))
const value = { id: 'x', next: null }

/** The longest single set and delete without a GC in it, in ms, and where. */
function run (shards: number): { set: number, setAt: number, del: number, delAt: number } {
  const maps = Array.from({ length: shards }, () => new Map<string, unknown>())
  const pick = (key: string): Map<string, unknown> => shards === 1 ? maps[0]! : maps[key.charCodeAt(0) % shards]!
  const slowest = { set: 0, setAt: 0, del: 0, delAt: 0 }
  for (let n = 0; n < keys.length; n++) {
    const key = keys[n]!
    const t0 = performance.now()
    pick(key).set(key, value)
    const t1 = performance.now()
    if (t1 - t0 > slowest.set && !gcIn(t0, t1)) { slowest.set = t1 - t0; slowest.setAt = n + 1 }
  }
  for (let n = 0; n < keys.length; n++) {
    const key = keys[n]!
    const t0 = performance.now()
    pick(key).delete(key)
    const t1 = performance.now()
    if (t1 - t0 > slowest.del && !gcIn(t0, t1)) { slowest.del = t1 - t0; slowest.delAt = keys.length - n - 1 }
  }
  return slowest
}

console.log(`${ENTRIES.toLocaleString('en')} keys of 22 characters (record ids); longest single call without GC, smallest of 3 runs`)
for (const shards of [1, 64]) {
  const runs = [run(shards), run(shards), run(shards)]
  const best = (k: 'set' | 'del'): typeof runs[number] => runs.reduce((a, b) => a[k] <= b[k] ? a : b)
  const set = best('set')
  const del = best('del')
  console.log(`${shards === 1 ? 'one Map      ' : `${shards} Maps (shards)`}: Map.set ${set.set.toFixed(1)} ms (at entry ${set.setAt.toLocaleString('en')}), ` +
    `Map.delete ${del.del.toFixed(1)} ms (with ${del.delAt.toLocaleString('en')} left)`)
}
