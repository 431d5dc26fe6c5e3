import { type XemsError, xemsError } from '../../errors.js'
import type { Query } from './connection.js'
import type { PostgresSealing } from './sealing.js'
import { POSTGRES_FORMAT_VERSION, POSTGRES_UPGRADES, postgresSchemaSql } from './schema.js'
import { ADVISORY_LOCK, type PostgresStatements } from './sql.js'

const CANARY_TEXT = `fastify-xems postgres canary, format ${POSTGRES_FORMAT_VERSION}`
/** pg_advisory_xact_lock key space: migrate() and the canary check of one schema+prefix serialise on it. */
const LOCK_LABEL = 'fastify-xems/postgres'
const UNDEFINED_TABLE = '42P01'
const UNDEFINED_SCHEMA = '3F000'

/** Where a PostgresStore keeps its tables, and how it seals: what the start-up checks work on. */
export interface PostgresPlace {
  schema: string
  tablePrefix: string
  sql: PostgresStatements
  sealing: PostgresSealing
}

/** The advisory lock key of one schema+prefix (a user's sign-ins lock `${key}/user/${digest}`). */
export function lockKeyOf (schema: string, tablePrefix: string): string {
  return `${LOCK_LABEL}/${schema}/${tablePrefix}`
}

/**
 * The work of `migrate()`, in its transaction: creates the schema and tables, or upgrades them from an
 * older layout format; FST_XEMS_STORE_FORMAT on a newer or unknown format.
 */
export async function migrateTables (query: Query, place: PostgresPlace): Promise<void> {
  await query(ADVISORY_LOCK, [lockKeyOf(place.schema, place.tablePrefix)])
  await query(place.sql.createSchema)
  await query(place.sql.createMeta)
  let found = await readFormat(query, place)
  if (found === null) {
    await query(postgresSchemaSql(place.schema, place.tablePrefix))
    found = POSTGRES_FORMAT_VERSION
  }
  while (found < POSTGRES_FORMAT_VERSION && POSTGRES_UPGRADES[found] !== undefined) {
    await query(POSTGRES_UPGRADES[found]!(place.schema, place.tablePrefix))
    found = await readFormat(query, place) ?? found
  }
  if (found !== POSTGRES_FORMAT_VERSION) throw formatError(place, String(found))
}

/**
 * The check of `ready()`, in its transaction: the layout format (FST_XEMS_STORE_FORMAT when it is
 * another, or when there are no tables), then the canary of each secret (FST_XEMS_WRONG_SECRET when
 * the data was written with another secret); the newest secret's canary is written when missing.
 */
export async function checkFormatAndCanary (query: Query, place: PostgresPlace): Promise<void> {
  await query(ADVISORY_LOCK, [lockKeyOf(place.schema, place.tablePrefix)])
  let format: number | null
  try {
    format = await readFormat(query, place)
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (code !== UNDEFINED_TABLE && code !== UNDEFINED_SCHEMA) throw err
    format = null
  }
  if (format === null) {
    throw xemsError('FST_XEMS_STORE_FORMAT', [tablesName(place), 'none (there are no tables)', POSTGRES_FORMAT_VERSION,
      'Call `await store.migrate()` at start-up, or run docs/postgres-schema.sql. See docs/stores.md, "PostgreSQL".'])
  }
  if (format !== POSTGRES_FORMAT_VERSION) throw formatError(place, String(format))
  const { rows } = await query<{ name: string, value: Buffer }>(place.sql.canaries)
  const { sealing } = place
  const newest = sealing.rings[0]!
  let opened = false
  let hasNewest = false
  for (const row of rows) {
    const id = row.name.slice('canary:'.length)
    const mine = sealing.rings.find((entry) => entry.id === id)
    if (mine === undefined) continue
    if (id === newest.id) hasNewest = true
    if (mine.ring.open(row.value, sealing.aad('canary', id))?.toString('utf8') !== CANARY_TEXT) {
      throw xemsError(
        'FST_XEMS_WRONG_SECRET', [`the PostgresStore canary "${row.name}"`, 'secret', 'its key id matches, so it was tampered with']
      )
    }
    opened = true
  }
  if (rows.length > 0 && !opened) {
    throw xemsError('FST_XEMS_WRONG_SECRET', [
      `the PostgresStore data in schema "${place.schema}" with prefix "${place.tablePrefix}"`, 'secret',
      'it was written with another secret. Use that secret (or list it as an older one: [new, old]), ' +
        'or choose another schema or prefix.'
    ])
  }
  if (!hasNewest) {
    await query(place.sql.insertCanary, [`canary:${newest.id}`, newest.ring.seal(CANARY_TEXT, sealing.aad('canary', newest.id))])
  }
}

async function readFormat (query: Query, place: PostgresPlace): Promise<number | null> {
  const { rows } = await query<{ value: Buffer }>(place.sql.readFormat)
  if (rows[0] === undefined) return null
  const found = Number(rows[0].value.toString('utf8'))
  if (!Number.isInteger(found)) throw formatError(place, rows[0].value.toString('utf8').slice(0, 20))
  return found
}

function formatError (place: PostgresPlace, found: string): XemsError {
  return xemsError('FST_XEMS_STORE_FORMAT', [tablesName(place), found, POSTGRES_FORMAT_VERSION,
    'Use the version that wrote them, or another schema or prefix. See docs/stores.md, "PostgreSQL".'])
}

function tablesName (place: PostgresPlace): string {
  return `the PostgresStore tables in schema "${place.schema}" with prefix "${place.tablePrefix}"`
}
