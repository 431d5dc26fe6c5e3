/**
 * The PostgreSQL schema of PostgresStore, as SQL text: `store.migrate()` runs it, and
 * docs/postgres-schema.sql is the same text for the default schema and prefix (a test keeps them equal),
 * for teams that run their migrations themselves.
 *
 * Tables (names `<prefix><table>` in the schema the app chooses):
 *   meta      name → value: `format` (the layout format below) and one `canary:<key id>` per secret
 *   sessions  one row per session: plain columns for what the database must compare (sandbox, times,
 *             the rotation state of token keys and grace boxes, the user's digest), sealed bytea for
 *             the rest (the user id and every binding, the data)
 *   kv        the values of the sandboxes, sealed, under a digest of their key
 *   counters  fixed-window counters under a digest of their key
 * Every expiring table has a B-tree index on its deadline: the sweep deletes small batches in
 * deadline order, never scanning a table.
 */

/**
 * The layout format. The meta table records it; a store refuses a schema written in another format
 * (FST_XEMS_STORE_FORMAT), and `migrate()` upgrades an older one step by step (none yet: format 1 is
 * the first).
 */
export const POSTGRES_FORMAT_VERSION = 1

const NAME = /^[a-z_][a-z0-9_]{0,39}$/
const PREFIX = /^[a-z_][a-z0-9_]{0,19}$/

export function isSchemaName (value: unknown): value is string {
  return typeof value === 'string' && NAME.test(value)
}

export function isTablePrefix (value: unknown): value is string {
  return typeof value === 'string' && (value === '' || PREFIX.test(value))
}

export interface TableNames {
  schema: string
  meta: string
  sessions: string
  kv: string
  counters: string
}

/** The quoted, schema-qualified table names (the names are checked by isSchemaName/isTablePrefix first). */
export function tableNames (schema: string, prefix: string): TableNames {
  const q = (table: string): string => `"${schema}"."${prefix}${table}"`
  return { schema: `"${schema}"`, meta: q('meta'), sessions: q('sessions'), kv: q('kv'), counters: q('counters') }
}

/** The DDL of format POSTGRES_FORMAT_VERSION, from nothing (every statement is idempotent). */
export function postgresSchemaSql (schema = 'public', prefix = 'xems_'): string {
  const t = tableNames(schema, prefix)
  const index = (table: string, what: string): string => `"${prefix}${table}_${what}"`
  return `-- fastify-xems PostgresStore, layout format ${POSTGRES_FORMAT_VERSION}: schema "${schema}", table prefix "${prefix}".
-- Times are milliseconds since the epoch (bigint). Sealed columns are AES-256-GCM, bound to their place.
CREATE SCHEMA IF NOT EXISTS ${t.schema};

CREATE TABLE IF NOT EXISTS ${t.meta} (
  name  text PRIMARY KEY,
  value bytea NOT NULL
);

CREATE TABLE IF NOT EXISTS ${t.sessions} (
  id                  text PRIMARY KEY,          -- the record id (a digest of the locator, never the token)
  sandbox             text NOT NULL,
  user_digest         text,                      -- SHA-256 of the user id: the user index
  created_at          bigint NOT NULL,
  last_seen_at        bigint NOT NULL,
  idle_ttl            bigint NOT NULL,
  absolute_expires_at bigint NOT NULL,
  expires_at          bigint NOT NULL,           -- least(last_seen_at + idle_ttl, absolute_expires_at)
  rotation            jsonb NOT NULL,            -- {cur, seen, past: [{key, box, until}]}: token keys and grace boxes
  binding             bytea NOT NULL,            -- sealed: the user id, bound to id, sandbox, ttl and times
  data                bytea NOT NULL             -- sealed: the session data, bound to id
);
CREATE INDEX IF NOT EXISTS ${index('sessions', 'expires_at')} ON ${t.sessions} (expires_at);
CREATE INDEX IF NOT EXISTS ${index('sessions', 'user_digest')} ON ${t.sessions} (user_digest) WHERE user_digest IS NOT NULL;

CREATE TABLE IF NOT EXISTS ${t.kv} (
  sandbox    text NOT NULL,
  name       text NOT NULL,                      -- SHA-256 of the key
  value      bytea NOT NULL,                     -- sealed, bound to sandbox and key
  expires_at bigint NOT NULL,
  PRIMARY KEY (sandbox, name)
);
CREATE INDEX IF NOT EXISTS ${index('kv', 'expires_at')} ON ${t.kv} (expires_at);

CREATE TABLE IF NOT EXISTS ${t.counters} (
  name     text PRIMARY KEY,                       -- SHA-256 of the key
  count    bigint NOT NULL,
  reset_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS ${index('counters', 'reset_at')} ON ${t.counters} (reset_at);

INSERT INTO ${t.meta} (name, value) VALUES ('format', convert_to('${POSTGRES_FORMAT_VERSION}', 'UTF8')) ON CONFLICT (name) DO NOTHING;
`
}

/**
 * Upgrades from an older format, by the format found: each step takes format n to n + 1 and sets
 * `format` to n + 1 in the same transaction. Empty while format 1 is the only one.
 */
export const POSTGRES_UPGRADES: Record<number, (schema: string, prefix: string) => string> = {}
