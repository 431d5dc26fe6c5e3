/**
 * The docs cite the tests that prove each claim as `test/path/file.test.ts` › “name”, › “another name in
 * the same file”; `test/other.test.ts` › “…” (docs/security.md, first paragraph). This test reads
 * README.md and docs/*.md and checks every citation: the file exists and has a test titled exactly so
 * (`t.test(…)` or `test(…)`, at any depth). A test renamed or moved, or a name put after the wrong file,
 * fails here with the doc, its line, the file and the name.
 *
 * Reading a citation: within one line, and within one table cell of it, every › “name” belongs to the
 * last backticked `test/…` or `lib/…` path before it; a › “name” with no path before it fails. A source
 * file named without test names (`test/lib/binding/dbsc.test.ts`) must exist too.
 *
 * Titles built from template literals (`${BURST} parallel password guesses on ${name}: …`, the
 * conformance suite's `at most ${MAX_PAST_TOKENS} rotated tokens …`, `register fails on ${what}`): a
 * cited name matches when it is the template's fixed text with each placeholder replaced by a value
 * the file itself spells out:
 * - a placeholder that is an identifier bound by `const X = <number or string literal>` in the file, or
 *   imported by name from a relative module that has `export const X = <literal>`, stands for that
 *   value only;
 * - any other placeholder (a loop variable such as the store's name or a row of a table of cases)
 *   stands for any string literal or literal constant of the same file.
 * A template whose fixed text is shorter than MIN_FIXED characters never matches, so that a title like
 * `${name}` cannot vouch for any name. Tests of the published conformance suite are titled in
 * lib/store/conformance/cases-*.ts (test/stores/conformance.ts only runs them), so they are cited there.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import t from 'tap'

const root = join(import.meta.dirname, '..', '..')
const MIN_FIXED = 12

type Literal = { kind: 'plain', value: string } | { kind: 'template', parts: string[], exprs: string[] }

/** A JavaScript string's escapes, decoded (\' \" \\ \n \t \u{…} \uXXXX \xXX; a line continuation). */
function unescape (raw: string): string {
  return raw.replace(/\\(u\{[0-9a-fA-F]+\}|u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|\r?\n|[\s\S])/g, (_, e: string) => {
    if (e.startsWith('u{')) return String.fromCodePoint(parseInt(e.slice(2, -1), 16))
    if (e.startsWith('u') || e.startsWith('x')) return String.fromCharCode(parseInt(e.slice(1), 16))
    if (e === '\n' || e === '\r\n') return ''
    return ({ n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', v: '\v', 0: '\0' } as Record<string, string>)[e] ?? e
  })
}

/** The string or template literal starting at src[at], or null when there is none. */
function literalAt (src: string, at: number): Literal | null {
  const quote = src[at]
  if (quote === "'" || quote === '"') {
    let i = at + 1
    while (i < src.length && src[i] !== quote) i += src[i] === '\\' ? 2 : 1
    return { kind: 'plain', value: unescape(src.slice(at + 1, i)) }
  }
  if (quote !== '`') return null
  const parts: string[] = []
  const exprs: string[] = []
  let i = at + 1
  let start = i
  while (i < src.length && src[i] !== '`') {
    if (src[i] === '\\') { i += 2; continue }
    if (src[i] === '$' && src[i + 1] === '{') {
      parts.push(unescape(src.slice(start, i)))
      let depth = 1
      const from = i + 2
      i = from
      while (i < src.length && depth > 0) {
        if (src[i] === '{') depth++
        else if (src[i] === '}') depth--
        i++
      }
      exprs.push(src.slice(from, i - 1).trim())
      start = i
      continue
    }
    i++
  }
  parts.push(unescape(src.slice(start, i)))
  return exprs.length === 0 ? { kind: 'plain', value: parts[0] ?? '' } : { kind: 'template', parts, exprs }
}

/** The titles of the file's tests: the literal first argument of every `test(`, `t.test(` or `tap.test(`. */
function titlesOf (src: string): Literal[] {
  const titles: Literal[] = []
  for (const m of src.matchAll(/(?:(?<![\w$.])(?:t|tap)\.|(?<![\w$.]))test\(\s*/g)) {
    const title = literalAt(src, m.index + m[0].length)
    if (title !== null) titles.push(title)
  }
  return titles
}

/** The value of a literal initialiser (a number, possibly with _, or a quoted string), or null. */
function literalValue (init: string): string | null {
  const number = /^(\d[\d_]*(?:\.\d+)?)\b/.exec(init)
  if (number !== null) return String(Number((number[1] ?? '').replaceAll('_', '')))
  const quoted = /^'((?:[^'\\\n]|\\.)*)'|^"((?:[^"\\\n]|\\.)*)"/.exec(init)
  return quoted === null ? null : unescape(quoted[1] ?? quoted[2] ?? '')
}

/** The value of `const name = <literal>` in src (exported when `exported`), or null. */
function constIn (src: string, name: string, exported: boolean): string | null {
  const decl = new RegExp(`${exported ? 'export\\s+' : '(?<![\\w$])'}const\\s+${name}\\s*(?::[^=\\n]+)?=\\s*`, 'g')
  for (const m of src.matchAll(decl)) {
    const value = literalValue(src.slice(m.index + m[0].length))
    if (value !== null) return value
  }
  return null
}

/** The value of the identifier `name` in the file `file`: a literal const of its own, or one it imports. */
function resolveConst (file: string, src: string, name: string): string | null {
  const own = constIn(src, name, false)
  if (own !== null) return own
  for (const m of src.matchAll(/import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*'(\.[^']+)'/g)) {
    const names = (m[1] ?? '').split(',').map((n) => n.trim().split(/\s+as\s+/).pop())
    if (!names.includes(name)) continue
    const from = join(dirname(file), (m[2] ?? '').replace(/\.js$/, '.ts'))
    if (existsSync(from)) return constIn(readFileSync(from, 'utf8'), name, true)
  }
  return null
}

/** Every value the file spells out: its string literals and the values of its literal consts. */
function spelledOut (src: string): string[] {
  const values = new Set<string>()
  for (const m of src.matchAll(/'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)"/g)) values.add(unescape(m[1] ?? m[2] ?? ''))
  for (const m of src.matchAll(/(?<![\w$])const\s+([A-Za-z_$][\w$]*)\s*(?::[^=\n]+)?=\s*/g)) {
    const value = literalValue(src.slice(m.index + m[0].length))
    if (value !== null) values.add(value)
  }
  values.delete('')
  return [...values]
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** Whether the file `file` (source `src`) has a test titled `name`, by the rule in the header. */
function hasTest (file: string, src: string, name: string): boolean {
  let spelled: string[] | undefined
  for (const title of titlesOf(src)) {
    if (title.kind === 'plain') {
      if (title.value === name) return true
      continue
    }
    if (title.parts.join('').length < MIN_FIXED) continue
    const alternatives = title.exprs.map((expr) => {
      const value = /^[A-Za-z_$][\w$]*$/.test(expr) ? resolveConst(file, src, expr) : null
      if (value !== null) return escapeRe(value)
      spelled ??= spelledOut(src)
      return `(?:${spelled.map(escapeRe).join('|')})`
    })
    const pattern = title.parts.map((part, i) => escapeRe(part) + (alternatives[i] ?? '')).join('')
    if (new RegExp(`^${pattern}$`).test(name)) return true
  }
  return false
}

/** How docs/security.md describes the form itself: not a citation. */
const FORMAT = '`file` › “name”'

interface Citation { line: number, file: string | null, name: string }

/** The citations of a doc, and every backticked test/… or lib/… source file it names (no glob). */
function citationsOf (text: string): { citations: Citation[], paths: Array<{ line: number, path: string }> } {
  const citations: Citation[] = []
  const paths: Array<{ line: number, path: string }> = []
  text.split('\n').forEach((content, i) => {
    for (const cell of content.split(/(?<!\\)\|/)) {
      let file: string | null = null
      for (const m of cell.matchAll(/`file` › “name”|`((?:test|lib)\/[^`\s]*)`|›\s*“([^”]*)”/g)) {
        if (m[0] === FORMAT) continue
        if (m[1] !== undefined) {
          file = m[1]
          if (/^[^*]+\.ts$/.test(m[1])) paths.push({ line: i + 1, path: m[1] })
        } else {
          citations.push({ line: i + 1, file, name: m[2] ?? '' })
        }
      }
    }
  })
  return { citations, paths }
}

/** What is wrong with a citation, or null when it holds. */
function problemOf (citation: Citation): string | null {
  if (citation.file === null) return 'no backticked test file before this name'
  const file = join(root, citation.file)
  if (!existsSync(file)) return 'no such file'
  if (!hasTest(file, readFileSync(file, 'utf8'), citation.name)) return 'no test of that file has this title'
  return null
}

t.test('the citation reader: names follow their file; escapes, templates and loops are read by the rule', async (t) => {
  const doc = '| a | `test/x.test.ts` › “one”, › “two” (a note); `test/y.test.ts` › “three” | › “orphan” |\n`lib/z.ts` \\| `file` › “name”'
  const { citations, paths } = citationsOf(doc)
  t.same(citations, [
    { line: 1, file: 'test/x.test.ts', name: 'one' },
    { line: 1, file: 'test/x.test.ts', name: 'two' },
    { line: 1, file: 'test/y.test.ts', name: 'three' },
    { line: 1, file: null, name: 'orphan' }
  ])
  t.same(paths.map((p) => p.path), ['test/x.test.ts', 'test/y.test.ts', 'lib/z.ts'])

  const $ = (expr: string): string => '$' + `{${expr}}` // a placeholder in the source under test
  const src = [
    'const BURST = 3_00',
    "const stores = [['MemoryStore', 1], ['the vault', 2]]",
    "t.test('a \\'quoted\\' \"name\"', async () => {})",
    't.test("double \\"quoted\\"", async () => {})',
    `for (const [name] of stores) t.test(\`${$('BURST')} guesses on ${$('name')}: all refused\`, async () => {})`,
    `test(\`${$('name')}\`, async () => {})`,
    "re.test('not a title')"
  ].join('\n')
  const has = (name: string): boolean => hasTest(join(root, 'test', 'x.test.ts'), src, name)
  t.ok(has('a \'quoted\' "name"'), 'an escaped single quote')
  t.ok(has('double "quoted"'), 'an escaped double quote')
  t.ok(has('300 guesses on the vault: all refused'), 'a const and a loop value')
  t.notOk(has('299 guesses on the vault: all refused'), 'a const stands for its value only')
  t.notOk(has('300 guesses on Redis: all refused'), 'a loop value the file does not spell out')
  t.notOk(has('MemoryStore'), 'a template of placeholders only vouches for nothing')
  t.notOk(has('not a title'), 'a regex test is no test')
  t.notOk(has('a quoted name'), 'a name must be the whole title')
})

const docs = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)]
let total = 0

for (const doc of docs) {
  const { citations, paths } = citationsOf(readFileSync(join(root, doc), 'utf8'))
  total += citations.length
  t.test(`${doc}: every cited test exists under its file and name`, async (t) => {
    for (const citation of citations) {
      const problem = problemOf(citation)
      const where = `${doc}:${citation.line}: \`${citation.file ?? '?'}\` › “${citation.name}”`
      t.ok(problem === null, problem === null ? where : `${where}: ${problem}`)
    }
    for (const { line, path } of paths) t.ok(existsSync(join(root, path)), `${doc}:${line}: \`${path}\` exists`)
  })
}

t.test('the docs cite tests at all (the reader did not silently find nothing)', async (t) => {
  t.ok(total >= 150, `${total} citations read`)
})
