import t from 'tap'
import { IncrementalSweeper } from '../../../../lib/store/memory/sweeper.js'

t.test('removes expired entries across several maps, bounded by its time budget', async (t) => {
  const a = new Map<string, number>()
  const b = new Map<string, number>()
  for (let i = 0; i < 300_000; i++) a.set(`a${i}`, i % 2 === 0 ? 10 : 1000)
  for (let i = 0; i < 1000; i++) b.set(`b${i}`, 10)
  const target = (map: Map<string, number>) => ({ map, isExpired: (v: number, now: number) => v <= now, remove: (k: string) => { map.delete(k) } })
  const sweeper = new IncrementalSweeper([target(a), target(b)], 2)
  let longest = 0
  let steps = 0
  while (a.size > 150_000 || b.size > 0) {
    const started = performance.now()
    sweeper.step(100)
    longest = Math.max(longest, performance.now() - started)
    if (++steps > 10_000) break
  }
  t.equal(a.size, 150_000, 'every expired entry of the first map removed, live ones kept')
  t.equal(b.size, 0, 'the second map swept too')
  t.ok(steps > 1, `worked in ${steps} steps`)
  t.ok(longest < 50, `longest step ${longest.toFixed(2)} ms stays near its 2 ms budget`)
  t.equal(sweeper.step(100), 0, 'nothing left to remove')
})
