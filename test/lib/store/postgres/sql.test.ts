import t from 'tap'
import { tableNames } from '../../../../lib/store/postgres/schema.js'
import { ADVISORY_LOCK, postgresStatements, sweepStatements } from '../../../../lib/store/postgres/sql.js'

const names = tableNames('app_s', 'p_')
const all = (): Array<[string, string]> => [
  ...Object.entries(postgresStatements(names)),
  ...sweepStatements(names).map((text, i): [string, string] => [`sweep ${i}`, text]),
  ['advisory lock', ADVISORY_LOCK]
]

t.test('every statement names only the tables of its schema and prefix', async (t) => {
  const tables = new Set([names.meta, names.sessions, names.kv, names.counters])
  for (const [name, text] of all()) {
    for (const match of text.matchAll(/\b(?:FROM|INTO|UPDATE|EXISTS)\s+("[^"]+"(?:\."[^"]+")?|[a-z_]+\.[a-z_]+)/g)) {
      const expected = name === 'createSchema' ? match[1] === names.schema : tables.has(match[1]!)
      t.ok(expected, `${name}: ${match[1]} is the store's schema or one of its tables`)
    }
    t.notMatch(text, /public|xems_/, `${name}: nothing of the default schema or prefix`)
  }
  t.equal(postgresStatements(names).createSchema, 'CREATE SCHEMA IF NOT EXISTS "app_s"')
})

t.test('each statement reads its values as $1..$n, none skipped', async (t) => {
  for (const [name, text] of all()) {
    const used = new Set([...text.matchAll(/\$(\d+)/g)].map((match) => Number(match[1])))
    const expected = Array.from({ length: used.size }, (_, i) => i + 1)
    t.same([...used].sort((a, b) => a - b), expected, `${name}: $1..$${used.size}`)
  }
})

t.test('the sweep deletes in deadline order, skipping locked rows, at most $2 rows of each table', async (t) => {
  const sweeps = sweepStatements(names)
  t.equal(sweeps.length, 3)
  for (const [i, table] of [names.sessions, names.kv, names.counters].entries()) {
    t.ok(sweeps[i]!.startsWith(`DELETE FROM ${table} `), `sweep ${i} deletes from ${table}`)
    t.match(sweeps[i]!, /<= \$1 ORDER BY (expires_at|reset_at) LIMIT \$2 FOR UPDATE SKIP LOCKED\)$/)
  }
})
