/**
 * The published suite (fastify-xems/conformance, from dist: run `npm run build` first) under node:test,
 * in a child process as a third party would run it: MemoryStore passes every case; a store that breaks
 * one rule (kvAdd always succeeds) fails exactly the cases that hold it to that rule.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('../..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'xems-conformance-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })

function runUnderNodeTest (broken: boolean): { status: number | null, output: string } {
  const file = join(dir, `suite-${broken ? 'broken' : 'memory'}.test.mjs`)
  writeFileSync(file, `
import { test } from 'node:test'
import { runStoreConformance } from ${JSON.stringify(join(root, 'dist/conformance.js'))}
import { MemoryStore } from ${JSON.stringify(join(root, 'dist/index.js'))}
runStoreConformance(async () => {
  const store = new MemoryStore()
  ${broken ? 'store.kvAdd = async () => true' : ''}
  return { store, cleanup: async () => { await store.close() } }
}, { test })
`)
  const child = spawnSync(process.execPath, ['--test', '--test-reporter=tap', file], { encoding: 'utf8', timeout: 120_000 })
  return { status: child.status, output: child.stdout + child.stderr }
}

t.test('under node:test, MemoryStore passes all cases of the published suite', async (t) => {
  const { status, output } = runUnderNodeTest(false)
  t.equal(status, 0, 'node --test exits 0')
  t.match(output, /# pass 36\b/, '36 cases passed')
  t.match(output, /# fail 0\b/)
})

t.test('a store that breaks a rule fails the cases that hold it to it', async (t) => {
  const { status, output } = runUnderNodeTest(true)
  t.not(status, 0, 'node --test exits non-zero')
  t.match(output, /not ok \d+ - kvAdd sets once; kvTake gives a value once/)
  t.match(output, /not ok \d+ - parallel: one kvAdd, one kvTake and one migrate win/)
  t.match(output, /# fail 2\b/, 'those two, and no other')
})
