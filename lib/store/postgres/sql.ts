import type { TableNames } from './schema.js'

/** pg_advisory_xact_lock on a text key: held until the transaction ends. */
export const ADVISORY_LOCK = 'SELECT pg_advisory_xact_lock(hashtext($1))'

/** The statements of PostgresStore for one schema and prefix (values are always parameters: $1, $2...). */
export type PostgresStatements = ReturnType<typeof postgresStatements>

/**
 * Every statement PostgresStore sends but the UPDATE that writes a session back (its SET list is built
 * from what changed) and the sweep's (sweepStatements). Built once per store.
 */
export function postgresStatements (t: TableNames) {
  return Object.freeze({
    /** Run by `migrate()`, with the meta table, before the format is read. */
    createSchema: `CREATE SCHEMA IF NOT EXISTS ${t.schema}`,
    createMeta: `CREATE TABLE IF NOT EXISTS ${t.meta} (name text PRIMARY KEY, value bytea NOT NULL)`,
    /** The layout format the tables were made with. */
    readFormat: `SELECT value FROM ${t.meta} WHERE name = 'format'`,
    /** Every canary row: one per secret that has written here. */
    canaries: `SELECT name, value FROM ${t.meta} WHERE name LIKE 'canary:%'`,
    insertCanary: `INSERT INTO ${t.meta} (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
    /** create: an upsert (a record id is created once; a resend rewrites the same session). */
    insertSession: `INSERT INTO ${t.sessions}
      (id, sandbox, user_digest, created_at, last_seen_at, idle_ttl, absolute_expires_at, expires_at, rotation, binding, data)
      VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9, $10)
      ON CONFLICT (id) DO UPDATE SET sandbox = EXCLUDED.sandbox, user_digest = EXCLUDED.user_digest, created_at = EXCLUDED.created_at,
        last_seen_at = EXCLUDED.last_seen_at, idle_ttl = EXCLUDED.idle_ttl, absolute_expires_at = EXCLUDED.absolute_expires_at,
        expires_at = EXCLUDED.expires_at, rotation = EXCLUDED.rotation, binding = EXCLUDED.binding, data = EXCLUDED.data`,
    /** maxSessionsPerUser: the user's other live rows, oldest first. */
    userSessions: `SELECT id FROM ${t.sessions} WHERE user_digest = $1 AND expires_at > $2 AND id <> $3 ` +
      'ORDER BY created_at, id COLLATE "C"',
    deleteSessions: `DELETE FROM ${t.sessions} WHERE id = ANY($1) RETURNING id`,
    /** resolve, commit, migrate: the row, locked until the transaction ends. */
    lockSession: `SELECT * FROM ${t.sessions} WHERE id = $1 FOR UPDATE`,
    deleteSession: `DELETE FROM ${t.sessions} WHERE id = $1`,
    revokeUserSession: `DELETE FROM ${t.sessions} WHERE id = $1 AND user_digest = $2 AND expires_at > $3`,
    revokeUser: `DELETE FROM ${t.sessions} WHERE user_digest = $1 AND id IS DISTINCT FROM $2 RETURNING expires_at`,
    listUser: `SELECT id, sandbox, created_at, last_seen_at, idle_ttl, absolute_expires_at, expires_at, binding, data FROM ${t.sessions}
       WHERE user_digest = $1 AND expires_at > $2`,
    kvGet: `SELECT value FROM ${t.kv} WHERE sandbox = $1 AND name = $2 AND expires_at > $3`,
    /** A value sealed under an older secret, resealed: compare and set. */
    kvRewrite: `UPDATE ${t.kv} SET value = $4 WHERE sandbox = $1 AND name = $2 AND value = $3`,
    kvDelete: `DELETE FROM ${t.kv} WHERE sandbox = $1 AND name = $2`,
    kvSet: `INSERT INTO ${t.kv} (sandbox, name, value, expires_at) VALUES ($1, $2, $3, $4)
      ON CONFLICT (sandbox, name) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,
    kvLive: `SELECT EXISTS (SELECT 1 FROM ${t.kv} WHERE sandbox = $1 AND name = $2 AND expires_at > $3) AS live`,
    kvAdd: `INSERT INTO ${t.kv} AS old (sandbox, name, value, expires_at) VALUES ($1, $2, $3, $4)
      ON CONFLICT (sandbox, name) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at WHERE old.expires_at <= $5`,
    kvTake: `DELETE FROM ${t.kv} WHERE sandbox = $1 AND name = $2 RETURNING value, expires_at`,
    increment: `INSERT INTO ${t.counters} AS c (name, count, reset_at) VALUES ($1, 1, $2::bigint + $3::bigint)
       ON CONFLICT (name) DO UPDATE SET
         count = CASE WHEN c.reset_at <= $2::bigint THEN 1 ELSE c.count + 1 END,
         reset_at = CASE WHEN c.reset_at <= $2::bigint THEN $2::bigint + $3::bigint ELSE c.reset_at END
       RETURNING count, reset_at`,
    resetCounter: `DELETE FROM ${t.counters} WHERE name = $1`
  })
}

/** A sweep's deletes, one per table, each of at most $2 rows past their deadline $1. */
export function sweepStatements (t: TableNames): string[] {
  const { sessions, kv, counters } = t
  return [
    `DELETE FROM ${sessions} WHERE id IN (SELECT id FROM ${sessions} WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE ` +
      'SKIP LOCKED)',
    `DELETE FROM ${kv} WHERE (sandbox, name) IN (SELECT sandbox, name FROM ${kv} WHERE expires_at <= $1 ORDER BY expires_at LIMIT ` +
      '$2 FOR UPDATE SKIP LOCKED)',
    `DELETE FROM ${counters} WHERE name IN (SELECT name FROM ${counters} WHERE reset_at <= $1 ORDER BY reset_at LIMIT $2 FOR UPDATE ` +
      'SKIP LOCKED)'
  ]
}
