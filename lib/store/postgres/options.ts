import type { Pool } from 'pg'
import { parseSecret } from '../../crypto/cipher.js'
import { badOption } from '../../errors.js'
import { isSchemaName, isTablePrefix } from './schema.js'

/** A 32-byte secret as `parseSecret` reads it (see RedisStoreSecret). */
export type PostgresStoreSecret = string | Uint8Array

export interface PostgresStoreOptions {
  /** A `pg` Pool. It stays yours: `close()` does not end it. */
  pool: Pool
  /** The secret(s) that seal what is written: one 32-byte secret, or `[newest, ...older]` while rotating. */
  secret: PostgresStoreSecret | PostgresStoreSecret[]
  /** The schema of the tables (default `public`; `migrate()` creates it): `[a-z_][a-z0-9_]{0,39}`. */
  schema?: string
  /** Prefix of the table names (default `xems_`): `[a-z_][a-z0-9_]{0,19}` or empty. */
  tablePrefix?: string
  /**
   * Bounds every store call, from taking a connection to the last answer (default 2000 ms). A call
   * past it fails (503) and its connection is destroyed; transactions also carry it as their
   * `statement_timeout` and `lock_timeout`, so the server gives up too.
   */
  timeout?: number
  /** How often expired rows are deleted, in ms (default 60 000; 0: never, e.g. when a job calls `sweep()`). */
  sweepInterval?: number
  /** Rows deleted per statement by a sweep (default 500). */
  sweepBatch?: number
}

/** PostgresStoreOptions checked, with their defaults filled in and the secrets parsed. */
export interface CheckedPostgresOptions {
  pool: Pool
  schema: string
  prefix: string
  secrets: Buffer[]
  timeout: number
  sweepInterval: number
  sweepBatch: number
}

/** Checks the options of PostgresStore in the order its constructor always has (the first bad one throws). */
export function checkPostgresOptions (options: PostgresStoreOptions): CheckedPostgresOptions {
  if (options === null || typeof options !== 'object') {
    throw badOption('options', 'of PostgresStore must be an object { pool, secret, schema?, tablePrefix? }')
  }
  const pool = options.pool as unknown as Record<string, unknown> | null | undefined
  if (pool === null || typeof pool !== 'object' || typeof pool.connect !== 'function' || typeof pool.query !== 'function') {
    throw badOption('pool', 'must be a pg Pool: new pg.Pool({ connectionString })')
  }
  const schema = options.schema ?? 'public'
  if (!isSchemaName(schema)) throw badOption('schema', 'must match [a-z_][a-z0-9_]{0,39}')
  const prefix = options.tablePrefix ?? 'xems_'
  if (!isTablePrefix(prefix)) throw badOption('tablePrefix', 'must match [a-z_][a-z0-9_]{0,19} or be empty')
  if (options.secret === undefined || options.secret === null) {
    throw badOption(
      'secret', 'is required: a 32-byte secret (or [newest, ...older] while rotating) that seals everything written to PostgreSQL'
    )
  }
  const given = Array.isArray(options.secret) ? options.secret : [options.secret]
  if (given.length === 0) throw badOption('secret', 'must hold at least one secret')
  const secrets = given.map((secret, i) => parseSecret(secret, Array.isArray(options.secret) ? `secret[${i}]` : 'secret'))
  const timeout = options.timeout ?? 2000
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > 600_000) {
    throw badOption('timeout', 'must be a whole number of ms from 1 to 600000')
  }
  const sweepInterval = options.sweepInterval ?? 60_000
  if (!Number.isInteger(sweepInterval) || sweepInterval < 0) {
    throw badOption('sweepInterval', 'must be a whole number of ms, 0 to turn the sweep off')
  }
  const sweepBatch = options.sweepBatch ?? 500
  if (!Number.isInteger(sweepBatch) || sweepBatch < 1 || sweepBatch > 100_000) {
    throw badOption('sweepBatch', 'must be a whole number from 1 to 100000')
  }
  return { pool: options.pool, schema, prefix, secrets, timeout, sweepInterval, sweepBatch }
}
