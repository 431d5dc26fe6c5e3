// The default reporter of npm test: passing files stay silent, a failing file is named with its failing
// assertions and their diagnostics, tap's count passes through, and one line sums up.
import t from 'tap'
import TapSummary from '../scripts/tap-summary.mjs'

async function report (tap: string): Promise<string> {
  const reporter = new TapSummary()
  let out = ''
  reporter.on('data', (chunk: Buffer) => { out += chunk.toString('utf8') })
  const ended = new Promise((resolve) => reporter.on('end', resolve))
  // Split mid-line, as a stream may.
  reporter.write(tap.slice(0, 37))
  reporter.end(tap.slice(37))
  await ended
  return out
}

const passing = [
  'TAP version 14',
  '# Subtest: test/a.test.ts',
  '    # Subtest: works',
  '        ok 1 - fine',
  '        1..1',
  '    ok 1 - works # time=3ms',
  '    1..1',
  'ok 1 - test/a.test.ts # time=100ms'
]

t.test('all passing: one line, nothing of the passing assertions', async (t) => {
  const out = await report([...passing, '1..1', '# { total: 1, pass: 1 }', ''].join('\n'))
  t.match(out, /^# \{ total: 1, pass: 1 \}$/m)
  t.match(out, /✓ all 1 test files passed/)
  t.notMatch(out, /fine|works/)
})

t.test('a failing file: named, with its failing assertion and diagnostics, and counted', async (t) => {
  const out = await report([
    ...passing,
    '# Subtest: test/b.test.ts',
    '    # Subtest: breaks',
    '        ok 1 - this one holds',
    '        not ok 2 - one is two',
    '          ---',
    '          diff: |',
    '            -2',
    '            +1',
    '          ...',
    '        ok 3 - after it',
    '        1..3',
    '    not ok 1 - breaks # time=5ms',
    '    1..1',
    'not ok 2 - test/b.test.ts # time=80ms',
    '1..2',
    '# { total: 4, pass: 3, fail: 1 }',
    ''
  ].join('\n'))
  t.match(out, /^✗ test\/b\.test\.ts$/m)
  t.match(out, /not ok 2 - one is two\n {10}---\n {10}diff: \|\n {12}-2\n {12}\+1/)
  t.match(out, /not ok 1 - breaks/)
  t.notMatch(out, /this one holds|after it|test\/a\.test\.ts/)
  t.match(out, /✗ 1 of 2 test files failed .*:\n {2}test\/b\.test\.ts\n$/)
  t.match(out, /^# \{ total: 4, pass: 3, fail: 1 \}$/m)
})

t.test('a coverage threshold not met: every file passed, and the summary still says the run fails, and why', async (t) => {
  const out = await report([...passing, '1..1', '# ERROR: incomplete branches coverage (79.5%)', '# { total: 1, pass: 1 }', ''].join('\n'))
  t.match(out, /✓ all 1 test files passed/)
  t.match(out, /✗ and the run fails: incomplete branches coverage \(79\.5%\)/)
  t.match(out, /npx tap --disable-coverage FILE/, 'says how to run one file alone')
})
