// The docs' ```ts snippets type-check in a consumer's strictest project (scripts/check-snippets.mjs), and the
// check fails when a snippet breaks. Needs dist: `npm run build` (npm test does it first).
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'

// A cold run type-checks @types/node, fastify and the package with skipLibCheck off, twice: over a minute
// on a busy 2-core machine (later runs reuse node_modules/.cache/xems-snippets and take seconds).
t.setTimeout(480_000)

const script = join(import.meta.dirname, '..', 'scripts', 'check-snippets.mjs')
const run = (args: string[]): { status: number | null, out: string } => {
  const result = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8' })
  return { status: result.status, out: `${result.stdout}${result.stderr}` }
}

t.test('every snippet of README.md and docs/*.md type-checks under strict flags, nodenext and bundler', async (t) => {
  const { status, out } = run([])
  t.equal(status, 0, out)
  const counted = /^(\d+) snippets in (\d+) files, nodenext and bundler: all type-check$/m.exec(out)
  t.ok(counted !== null && Number(counted[1]) >= 18 && Number(counted[2]) >= 9, `every snippet was found and checked: ${out}`)
})

t.test('a broken snippet fails the check, named by file and line; a skip needs a reason', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xems-broken-docs-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'broken.md')
  writeFileSync(file, [
    '# broken',
    '',
    '```ts',
    "import { verifyTotp } from 'fastify-xems/mfa'",
    'const window = process.env.WINDOW === undefined ? undefined : Number(process.env.WINDOW)',
    "await verifyTotp({ secret: 'JBSWY3DPEHPK3PXP', token: '123456', window })   // number | undefined: accepted",
    'const codes: string[] = []',
    'const first: string = codes[0]   // noUncheckedIndexedAccess: string | undefined',
    '```',
    '',
    '<!-- snippet: skip: -->',
    '```ts',
    "const x: number = 'not a number'",
    '```',
    '',
    '<!-- snippet: skip: not code -->',
    '```ts',
    'this is skipped',
    '```',
    ''
  ].join('\n'))
  const { status, out } = run(['--mode=nodenext', file])
  t.equal(status, 1)
  t.match(out, /broken\.md:8:\d+ \[nodenext\] TS2322/, 'the unchecked index, at its line')
  t.match(out, /broken\.md:13:\d+ \[nodenext\] TS2322/, 'a skip marker without a reason skips nothing')
  t.notMatch(out, /broken\.md:[4-6]:/, 'undefined for an optional option is accepted')
  t.notMatch(out, /broken\.md:18:/, 'a skipped block is not compiled')
  t.match(out, /^2 snippets in 1 files, nodenext: 2 errors$/m)
})
