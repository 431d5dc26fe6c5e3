import t from 'tap'
import { IncrementalSweeper } from '../../../../lib/store/memory/sweeper.js'

t.test('removes expired entries across several maps, each step stopping once its time budget is spent', async (t) => {
  const a = new Map<string, number>()
  const b = new Map<string, number>()
  for (let i = 0; i < 300_000; i++) a.set(`a${i}`, i % 2 === 0 ? 10 : 1000)
  for (let i = 0; i < 1000; i++) b.set(`b${i}`, 10)
  let visited = 0
  const target = (map: Map<string, number>) => ({
    map, isExpired: (v: number, now: number) => { visited++; return v <= now }, remove: (k: string) => { map.delete(k) }
  })
  // A clock of the test's own: 1/64 ms per reading (exact in binary), so a 2 ms budget is spent after 128 more
  // readings (one per 256 entries visited): at most 128 × 256 entries a step, whatever the machine's speed or load.
  let now = 0
  const sweeper = new IncrementalSweeper([target(a), target(b)], 2, () => (now += 1 / 64))
  let most = 0
  let steps = 0
  while (a.size > 150_000 || b.size > 0) {
    visited = 0
    sweeper.step(100)
    most = Math.max(most, visited)
    if (++steps > 10_000) break
  }
  t.equal(a.size, 150_000, 'every expired entry of the first map removed, live ones kept')
  t.equal(b.size, 0, 'the second map swept too')
  t.ok(steps >= 301_000 / (128 * 256), `worked in ${steps} steps`)
  t.equal(most, 128 * 256, 'a full step visits exactly what its budget allows')
  t.ok(most <= 128 * 256, `a step visited at most ${most} entries: it stopped when its budget was spent`)
  t.equal(sweeper.step(100), 0, 'nothing left to remove')
})
