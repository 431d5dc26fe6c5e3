/**
 * The package's entry points (dist: run `npm run build` first): `fastify-xems/postgres` and
 * `fastify-xems/conformance` resolve through package.json "exports", and the main entry's import graph
 * never reaches `pg` (an optional peer: an app without PostgreSQL does not install it).
 */
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** Every module specifier statically imported from `file` and, for relative ones, from theirs. */
function importGraph (file: string, seen = new Set<string>(), bare = new Set<string>()): Set<string> {
  if (seen.has(file)) return bare
  seen.add(file)
  const text = readFileSync(file, 'utf8')
  for (const match of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]/gm)) {
    const specifier = match[1] ?? match[2]!
    if (specifier.startsWith('.')) importGraph(resolve(dirname(file), specifier), seen, bare)
    else bare.add(specifier)
  }
  return bare
}

t.test('fastify-xems loads no pg; fastify-xems/postgres and fastify-xems/conformance are exported', async (t) => {
  const main = importGraph(resolve(root, 'dist/index.js'))
  t.ok(main.size > 0, `the main entry imports ${[...main].join(', ')}`)
  t.notOk([...main].some((specifier) => specifier === 'pg' || specifier.startsWith('pg/')), 'no pg in the import graph of fastify-xems')
  const postgres = await import('fastify-xems/postgres')
  t.type(postgres.PostgresStore, 'function')
  t.type(postgres.postgresSchemaSql, 'function')
  const conformance = await import('fastify-xems/conformance')
  t.type(conformance.runStoreConformance, 'function')
  const exportsField = (JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as { exports: Record<string, unknown> }).exports
  t.same(exportsField['./postgres'], { types: './dist/postgres.d.ts', default: './dist/postgres.js' })
  t.same(exportsField['./conformance'], { types: './dist/conformance.d.ts', default: './dist/conformance.js' })
})
