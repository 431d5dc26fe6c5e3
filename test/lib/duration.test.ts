import t from 'tap'
import { parseDuration, parsePositiveDuration } from '../../lib/duration.js'

t.test('accepts milliseconds and unit strings', async (t) => {
  t.equal(parseDuration(0, 'x'), 0)
  t.equal(parseDuration(1500, 'x'), 1500)
  t.equal(parseDuration('500ms', 'x'), 500)
  t.equal(parseDuration('30s', 'x'), 30_000)
  t.equal(parseDuration('15m', 'x'), 900_000)
  t.equal(parseDuration('1h', 'x'), 3_600_000)
  t.equal(parseDuration('5d', 'x'), 432_000_000)
})

t.test('rejects anything else with a message naming the option', async (t) => {
  for (const bad of ['', '5', '1.5h', '-1s', ' 1h', '1h ', '1H', '1w', '1e3ms', 'abc', 1.5, -1, NaN, Infinity, null, undefined, {}, [], '9999999999d', 2 ** 60]) {
    t.throws(() => parseDuration(bad, 'ttl'), { code: 'FST_XEMS_BAD_DURATION', message: /option "ttl" must be/ }, `rejects ${String(bad)}`)
  }
  t.throws(() => parseDuration('x'.repeat(100), 'ttl'), { message: /got "x{40}…"/ }, 'long input is cut in the message')
})

t.test('positive durations refuse zero', async (t) => {
  t.equal(parsePositiveDuration('1s', 'window'), 1000)
  t.throws(() => parsePositiveDuration(0, 'window'), { code: 'FST_XEMS_BAD_DURATION', message: /"window" must be a duration longer than zero/ })
  t.throws(() => parsePositiveDuration('0s', 'window'), { code: 'FST_XEMS_BAD_DURATION' })
})
