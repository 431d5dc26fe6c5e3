#!/usr/bin/env node
// Type-checks every ```ts block of README.md and docs/*.md against the built package (dist), the way a
// consumer's strict project sees it: a project (node_modules/.cache/xems-snippets) whose
// node_modules/fastify-xems is this package, compiled with strict, exactOptionalPropertyTypes,
// noUncheckedIndexedAccess and skipLibCheck: false, once with module nodenext and once with
// moduleResolution bundler. Exits 1 and names the snippet, file and line, on any error.
//
// A block that is not code to copy (a list of signatures) says so on the line before its fence:
//   <!-- snippet: skip: a summary of signatures, not code -->
// A block whose module augmentation would change the types of the others is compiled in a program of its own:
//   <!-- snippet: alone: why -->
// Excerpts may use the names that scripts/snippet-globals.d.ts declares (what the surrounding page defined).
//
// Usage: node scripts/check-snippets.mjs [--mode=nodenext|bundler] [file.md ...]
//   (default: both modes, README.md and docs/*.md; needs `npm run build`)
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const SKIP = /^<!--\s*snippet:\s*skip:\s*\S.*-->\s*$/
const ALONE = /^<!--\s*snippet:\s*alone:\s*\S.*-->\s*$/

/** The ```ts blocks of a markdown file: { file, line, code } (skipped ones left out, with their reason checked). */
export function extractSnippets (file) {
  const lines = readFileSync(file, 'utf8').split('\n')
  const snippets = []
  for (let i = 0; i < lines.length; i++) {
    if (!/^```ts\s*$/.test(lines[i])) continue
    let end = i + 1
    while (end < lines.length && !/^```\s*$/.test(lines[end])) end++
    let before = i - 1
    while (before >= 0 && lines[before].trim() === '') before--
    const marker = before >= 0 ? lines[before] : ''
    if (!SKIP.test(marker)) snippets.push({ file, line: i + 2, code: lines.slice(i + 1, end).join('\n'), alone: ALONE.test(marker) })
    i = end
  }
  return snippets
}

const STRICT = {
  strict: true,
  exactOptionalPropertyTypes: true,
  noUncheckedIndexedAccess: true,
  skipLibCheck: false,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  lib: ['lib.es2022.d.ts'],
  types: ['node'],
  esModuleInterop: true
}
export const MODES = {
  nodenext: { ...STRICT, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext },
  bundler: { ...STRICT, module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler }
}

/**
 * A consumer-like project: its node_modules holds this package (a symlink to it) and the packages it can
 * see. It lives in node_modules/.cache/xems-snippets, kept between runs with one tsbuildinfo per mode, so a
 * rerun re-checks only what changed (the libraries' own diagnostics are cached by content hash).
 */
function makeProject () {
  if (!existsSync(join(root, 'dist', 'index.d.ts'))) throw new Error('dist/index.d.ts is missing: run `npm run build` first')
  const dir = join(root, 'node_modules', '.cache', 'xems-snippets')
  const modules = join(dir, 'node_modules')
  mkdirSync(modules, { recursive: true })
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'snippets', private: true, type: 'module' }))
  for (const entry of readdirSync(join(root, 'node_modules'))) {
    if (entry.startsWith('.') || existsSync(join(modules, entry))) continue
    symlinkSync(join(root, 'node_modules', entry), join(modules, entry))
  }
  if (!existsSync(join(modules, 'fastify-xems'))) symlinkSync(root, join(modules, 'fastify-xems'))
  const snippets = join(dir, 'snippets')
  rmSync(snippets, { recursive: true, force: true })
  mkdirSync(snippets)
  writeFileSync(join(dir, 'snippet-globals.d.ts'), readFileSync(join(root, 'scripts', 'snippet-globals.d.ts')))
  return { dir, snippets }
}

/**
 * Checks the snippets; returns the error messages (empty when all pass). All snippets are one program per
 * mode (each a module of its own): type-checking the libraries with skipLibCheck off is the slow part.
 * Their `declare module 'fastify-xems'` augmentations merge; two that disagree on a key are an error.
 */
export function checkSnippets (files, modes = Object.keys(MODES)) {
  const snippets = files.flatMap(extractSnippets)
  const { dir, snippets: snippetDir } = makeProject()
  const errors = []
  const named = snippets.map((snippet) => {
    const name = join(
      snippetDir, `${basename(dirname(snippet.file))}-${basename(snippet.file, '.md')}-${snippet.line}.ts`.replace(/[^A-Za-z0-9./_-]/g, '-')
    )
    writeFileSync(name, `${snippet.code}\nexport {}\n`)
    return { ...snippet, name }
  })
  if (named.length === 0) return { count: 0, errors }
  const groups = [named.filter((s) => !s.alone), ...named.filter((s) => s.alone).map((s) => [s])].filter((group) => group.length > 0)
  for (const mode of modes) {
    for (const [index, group] of groups.entries()) {
      const options = { ...MODES[mode], incremental: true, tsBuildInfoFile: join(dir, `${mode}-${index}.tsbuildinfo`) }
      const program = ts.createIncrementalProgram({
        rootNames: [join(dir, 'snippet-globals.d.ts'), ...group.map((s) => s.name)],
        options,
        host: ts.createIncrementalCompilerHost(options)
      })
      const diagnostics = [
        ...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics(), ...program.getSyntacticDiagnostics(),
        ...program.getSemanticDiagnostics()
      ]
      program.emit()   // noEmit: writes only the tsbuildinfo
      for (const d of diagnostics) {
        const message = ts.flattenDiagnosticMessageText(d.messageText, '\n')
        const snippet = d.file === undefined ? undefined : group.find((s) => s.name === d.file.fileName)
        if (snippet !== undefined && d.start !== undefined) {
          const { line, character } = d.file.getLineAndCharacterOfPosition(d.start)
          errors.push(`${relative(root, snippet.file)}:${snippet.line + line}:${character + 1} [${mode}] TS${d.code}: ${message}`)
        } else {
          errors.push(`${d.file === undefined ? '(program)' : relative(dir, d.file.fileName)} [${mode}] TS${d.code}: ${message}`)
        }
      }
    }
  }
  return { count: snippets.length, errors }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2)
  const modeArg = args.find((a) => a.startsWith('--mode='))
  const modes = modeArg === undefined ? Object.keys(MODES) : modeArg.slice('--mode='.length).split(',')
  for (const mode of modes) if (!(mode in MODES)) throw new Error(`unknown mode ${mode}: ${Object.keys(MODES).join(', ')}`)
  const paths = args.filter((a) => !a.startsWith('--'))
  const files = paths.length > 0
    ? paths.map((f) => resolve(f))
    : [
        join(root, 'README.md'), ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join(root, 'docs', f))
      ]
  const { count, errors } = checkSnippets(files, modes)
  for (const error of errors) console.error(error)
  const summary = errors.length === 0 ? 'all type-check' : `${errors.length} errors`
  console.log(`${count} snippets in ${files.length} files, ${modes.join(' and ')}: ${summary}`)
  process.exitCode = errors.length === 0 ? 0 : 1
}
