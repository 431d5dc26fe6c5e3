import { createHash } from 'node:crypto'
import type { Pool, PoolClient, QueryResultRow } from 'pg'
import { inline } from './literal.js'
import { Keyring, parseSecret } from '../../crypto/cipher.js'
import { badOption, isXemsError, XemsError, xemsError } from '../../errors.js'
import type {
  CommitInput, CommitResult, CounterResult, CreateInput, EncodedData, LimitResult, MigrateInput, ResolveInput,
  ResolveResult, SessionInfo, SessionStore, StoredSession, UserLimit
} from '../contract.js'
import { DEVICE_KEY } from '../contract.js'
import { chainOf, markPresented, matchToken, mayMigrate, newRotationState, retireAll, rotate, type RotationState } from '../rotation.js'
import {
  isSchemaName, isTablePrefix, POSTGRES_FORMAT_VERSION, POSTGRES_UPGRADES, postgresSchemaSql, tableNames, type TableNames
} from './schema.js'

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

/** The HKDF purpose of the keys that seal what PostgresStore writes. */
export const POSTGRES_SEAL_PURPOSE = 'xems/postgres/v1'
const CANARY_TEXT = `fastify-xems postgres canary, format ${POSTGRES_FORMAT_VERSION}`
/** pg_advisory_xact_lock key space: migrate() and the canary check of one schema+prefix serialise on it. */
const LOCK_LABEL = 'fastify-xems/postgres'
/** A sweep stops after this many full batches per table, and continues on its next tick. */
const SWEEP_MAX_BATCHES = 20
const UNDEFINED_TABLE = '42P01'
const UNDEFINED_SCHEMA = '3F000'

const NONE: ResolveResult = Object.freeze({ status: 'none' })

function digest (label: string, value: string): string {
  return createHash('sha256').update(label).update('\u0000').update(value, 'utf8').digest('base64url')
}

/** A bigint column (pg returns int8 as a string) as a number: times in ms are exact below 2^53. */
function int (value: unknown): number {
  return typeof value === 'number' ? value : Number(value)
}

interface SessionRow {
  id: string
  sandbox: string
  created_at: string
  last_seen_at: string
  idle_ttl: string
  absolute_expires_at: string
  expires_at: string
  rotation: RotationState
  binding: Buffer
  data: Buffer
}

/** A session row as the store works on it inside a transaction. */
interface Loaded {
  row: SessionRow
  state: RotationState
  userId: string | undefined
  createdAt: number
  idleTtl: number
  absoluteExpiresAt: number
  /** The binding was sealed under an older secret: rewrite it. */
  stale: boolean
}

type Query = <R extends QueryResultRow = QueryResultRow>(
  text: string, values?: unknown[]
) => Promise<{ rows: R[], rowCount: number | null }>
/** A transaction's last write, sent with its COMMIT in one round trip (its result is not needed). */
type Defer = (text: string, values: unknown[]) => void

/**
 * Sessions, values and counters in PostgreSQL through a `pg` Pool you supply.
 *
 * One row per session. resolve, commit and migrate are each one short READ COMMITTED transaction that
 * locks the session's row (`SELECT ... FOR UPDATE`) and applies the rotation rules of
 * lib/store/rotation.ts to it in TypeScript; every other operation is one statement. Every payload is
 * sealed with AES-256-GCM before it leaves the process, bound to its schema, table and row. The schema,
 * the transactions and what a DBA sees are documented in docs/stores.md.
 */
export class PostgresStore implements SessionStore {
  readonly schema: string
  readonly tablePrefix: string
  readonly #pool: Pool
  readonly #t: TableNames
  readonly #keyring: Keyring
  readonly #rings: Array<{ id: string, ring: Keyring }>
  readonly #timeout: number
  readonly #sweepBatch: number
  readonly #sweepTimer: NodeJS.Timeout | null = null
  #verified: Promise<void> | null = null
  #closed = false
  #sweeping = false

  constructor (options: PostgresStoreOptions) {
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

    this.schema = schema
    this.tablePrefix = prefix
    this.#pool = options.pool
    this.#t = tableNames(schema, prefix)
    this.#keyring = new Keyring(secrets, POSTGRES_SEAL_PURPOSE)
    this.#rings = secrets.map((secret) => {
      const ring = new Keyring([secret], POSTGRES_SEAL_PURPOSE)
      return { id: ring.seal('', 'key-id').subarray(1, 5).toString('hex'), ring }
    })
    this.#timeout = timeout
    this.#sweepBatch = sweepBatch
    // An idle connection the server ends (a restart, pg_terminate_backend) is an 'error' on the pool,
    // which would crash the process unheard; the pool drops that connection by itself.
    if (options.pool.listenerCount('error') === 0) options.pool.on('error', () => {})
    if (sweepInterval > 0) {
      this.#sweepTimer = setInterval(() => { this.sweep(Date.now()).catch(() => {}) }, sweepInterval)
      this.#sweepTimer.unref()
    }
  }

  /** The DDL that `migrate()` runs for this schema and prefix (docs/postgres-schema.sql is it for the defaults). */
  schemaSql (): string {
    return postgresSchemaSql(this.schema, this.tablePrefix)
  }

  /**
   * Without an argument: creates the schema and tables, or upgrades them from an older layout format,
   * in one transaction (instances that migrate at once wait for each other); fails with
   * FST_XEMS_STORE_FORMAT on a newer or unknown format. Call it once at start-up.
   * With a MigrateInput: the contract's session migration (a sandbox move, see SessionStore.migrate).
   */
  async migrate (): Promise<void>
  async migrate (input: MigrateInput): Promise<boolean | LimitResult>
  async migrate (input?: MigrateInput): Promise<boolean | LimitResult | void> {
    if (input === undefined) return await this.#migrateSchema()
    return await this.#migrateSession(input)
  }

  async #migrateSchema (): Promise<void> {
    this.#assertOpen()
    await this.#connected(async (query) => {
      await query('SELECT pg_advisory_xact_lock(hashtext($1))', [this.#lockKey()])
      await query(`CREATE SCHEMA IF NOT EXISTS ${this.#t.schema}`)
      await query(`CREATE TABLE IF NOT EXISTS ${this.#t.meta} (name text PRIMARY KEY, value bytea NOT NULL)`)
      let found = await this.#format(query)
      if (found === null) {
        await query(this.schemaSql())
        found = POSTGRES_FORMAT_VERSION
      }
      while (found < POSTGRES_FORMAT_VERSION && POSTGRES_UPGRADES[found] !== undefined) {
        await query(POSTGRES_UPGRADES[found]!(this.schema, this.tablePrefix))
        found = await this.#format(query) ?? found
      }
      if (found !== POSTGRES_FORMAT_VERSION) throw this.#formatError(String(found))
    }, true, Math.max(this.#timeout, 30_000))
  }

  /**
   * Checks the schema's layout format (FST_XEMS_STORE_FORMAT when it is another, or when there is no
   * schema: run `migrate()`) and the canary (FST_XEMS_BAD_SECRET when the data was written with another
   * secret). The first operation runs it anyway; call it at start-up to fail before serving.
   */
  async ready (): Promise<void> {
    this.#assertOpen()
    this.#verified ??= this.#checkCanary().catch((err: unknown) => {
      if (!isXemsError(err)) this.#verified = null
      throw err
    })
    await this.#verified
  }

  /**
   * One statement: an upsert (a record id is created once; a resend rewrites the same session). With a
   * userLimit, one transaction that takes the user's advisory lock, counts and decides (see #admit).
   */
  async create (input: CreateInput): Promise<LimitResult | void> {
    await this.ready()
    const { id } = input
    const expiresAt = Math.min(input.now + input.idleTtl, input.absoluteExpiresAt)
    if (expiresAt <= input.now) {
      return input.userId !== undefined && input.userLimit !== undefined ? { status: 'admitted', ended: [] } : undefined
    }
    const state = newRotationState(input.tokenKey)
    const insert = `INSERT INTO ${this.#t.sessions}
      (id, sandbox, user_digest, created_at, last_seen_at, idle_ttl, absolute_expires_at, expires_at, rotation, binding, data)
      VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9, $10)
      ON CONFLICT (id) DO UPDATE SET sandbox = EXCLUDED.sandbox, user_digest = EXCLUDED.user_digest, created_at = EXCLUDED.created_at,
        last_seen_at = EXCLUDED.last_seen_at, idle_ttl = EXCLUDED.idle_ttl, absolute_expires_at = EXCLUDED.absolute_expires_at,
        expires_at = EXCLUDED.expires_at, rotation = EXCLUDED.rotation, binding = EXCLUDED.binding, data = EXCLUDED.data`
    const values = [
      id, input.sandbox, input.userId === undefined ? null : digest('user', input.userId), input.now, input.idleTtl,
      input.absoluteExpiresAt,
      expiresAt, JSON.stringify(state),
      this.#binding(id, input.sandbox, input.idleTtl, input.now, input.absoluteExpiresAt, input.userId),
      this.#sealData(id, input.data)
    ]
    const { userId, userLimit } = input
    if (userId === undefined || userLimit === undefined) {
      await this.#query(insert, values)
      return
    }
    return await this.#transaction(async (query, defer) => {
      const admitted = await this.#admit(query, userId, id, userLimit, input.now)
      if (admitted.status === 'admitted') defer(insert, values)
      return admitted
    })
  }

  /**
   * maxSessionsPerUser, inside a transaction that then writes the session: the user's advisory lock
   * (sign-ins of one user serialise on it until COMMIT; READ COMMITTED, so the count after it sees every
   * earlier holder's rows), the count of the user's other live rows, and the decision: refuse, or delete
   * the least recently created (ties by id) to leave room for one.
   */
  async #admit (query: Query, userId: string, id: string, limit: UserLimit, now: number): Promise<LimitResult> {
    const user = digest('user', userId)
    await query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${this.#lockKey()}/user/${user}`])
    const { rows } = await query<{ id: string }>(
      `SELECT id FROM ${this.#t.sessions} WHERE user_digest = $1 AND expires_at > $2 AND id <> $3 ORDER BY created_at, id COLLATE "C"`,
      [user, now, id])
    if (rows.length < limit.max) return { status: 'admitted', ended: [] }
    if (limit.onLimit === 'refuse') return { status: 'refused' }
    const oldest = rows.slice(0, rows.length - limit.max + 1).map((row) => row.id)
    const { rows: gone } = await query<{ id: string }>(`DELETE FROM ${this.#t.sessions} WHERE id = ANY($1) RETURNING id`, [oldest])
    return { status: 'admitted', ended: gone.map((row) => row.id) }
  }

  /** One transaction: lock the row, match the token, mark it presented, refresh lastSeenAt. */
  async resolve (input: ResolveInput): Promise<ResolveResult> {
    await this.ready()
    return await this.#transaction(async (query, defer) => {
      const loaded = await this.#lock(query, defer, input.id, input.now)
      if (loaded === null) return NONE
      const { row, state } = loaded
      const match = matchToken(state, input.tokenKey, input.now)
      if (match.kind === 'reused') {
        if (input.revokeOnReuse) defer(`DELETE FROM ${this.#t.sessions} WHERE id = $1`, [input.id])
        const reused: ResolveResult = { status: 'reused', id: input.id, sandbox: row.sandbox, revoked: input.revokeOnReuse }
        if (loaded.userId !== undefined) reused.userId = loaded.userId
        const device = this.#openData(input.id, row.data)?.data[DEVICE_KEY]
        if (device !== undefined) reused.device = device
        return reused
      }
      if (match.kind === 'retired' || (input.sandbox !== undefined && row.sandbox !== input.sandbox)) return NONE
      const data = this.#openData(input.id, row.data)
      if (data === null) return NONE
      const presented = match.kind === 'current' && markPresented(state, input.now, input.gracePeriod)
      this.#write(defer, loaded, input.now, { rotation: presented, data: data.stale ? data.data : null })
      const session = this.#session(loaded, data.data, input.now)
      if (match.kind === 'current') return { status: 'live', session }
      return { status: 'grace', session, chain: match.chain }
    })
  }

  /** One transaction: lock the row, apply the patch, rotate if the presented token is current. */
  async commit (input: CommitInput): Promise<CommitResult> {
    await this.ready()
    return await this.#transaction(async (query, defer) => {
      const loaded = await this.#lock(query, defer, input.id, input.now)
      if (loaded === null) return { status: 'gone' }
      let data: EncodedData | null = null
      const patch = input.patch === null ? [] : Object.entries(input.patch)
      const opened = patch.length > 0 || this.#keyring.isStale(loaded.row.data) ? this.#openData(input.id, loaded.row.data) : null
      if (opened !== null) {
        data = opened.data
        for (const [key, value] of patch) {
          if (value === null) delete data[key]
          else data[key] = value
        }
      } else if (patch.length > 0) {
        return { status: 'gone' }
      }
      const { state } = loaded
      const rotated = input.rotate !== null && state.cur === input.tokenKey &&
        rotate(state, input.rotate.newKey, input.rotate.box, input.now, input.rotate.unseenWindow)
      const expiresAt = this.#write(defer, loaded, input.now, { rotation: rotated, data })
      if (rotated) return { status: 'ok', rotated: true, expiresAt }
      return { status: 'ok', rotated: false, chain: chainOf(state, input.tokenKey), expiresAt }
    })
  }

  /** One transaction: lock the row, check sandbox and token, retire every token, move. */
  async #migrateSession (input: MigrateInput): Promise<boolean | LimitResult> {
    await this.ready()
    return await this.#transaction(async (query, defer) => {
      const loaded = await this.#lock(query, defer, input.id, input.now)
      if (loaded === null) return false
      const { row, state } = loaded
      if (row.sandbox !== input.from || !mayMigrate(state, input.tokenKey)) return false
      let admitted: LimitResult | true = true
      if (input.userId !== undefined && input.userLimit !== undefined) {
        // The row is locked: a session that already names the user is counted already.
        admitted = loaded.userId === input.userId
          ? { status: 'admitted', ended: [] }
          : await this.#admit(query, input.userId, input.id, input.userLimit, input.now)
        if (admitted.status === 'refused') return admitted
      }
      let data: EncodedData | null = input.data === null ? null : Object.assign(Object.create(null) as EncodedData, input.data)
      if (data === null && this.#keyring.isStale(row.data)) data = this.#openData(input.id, row.data)?.data ?? null
      retireAll(state, input.newKey, input.now, input.retiredUntil)
      row.sandbox = input.to
      loaded.idleTtl = input.idleTtl
      if (input.userId !== undefined) loaded.userId = input.userId
      loaded.stale = true
      this.#write(defer, loaded, input.now, { rotation: true, data })
      return admitted
    })
  }

  /** One statement. */
  async destroy (id: string): Promise<boolean> {
    await this.ready()
    const { rowCount } = await this.#query(`DELETE FROM ${this.#t.sessions} WHERE id = $1`, [id])
    return (rowCount ?? 0) > 0
  }

  /** One statement: the row, only if it is a live session of the user (another user's id ends nothing). */
  async revokeUserSession (userId: string, id: string, now: number): Promise<boolean> {
    await this.ready()
    const { rowCount } = await this.#query(
      `DELETE FROM ${this.#t.sessions} WHERE id = $1 AND user_digest = $2 AND expires_at > $3`, [id, digest('user', userId), now]
    )
    return (rowCount ?? 0) > 0
  }

  /** One statement: every row of the user's digest (but `exceptId`), deleted; counts those still live. */
  async revokeUser (userId: string, now: number, exceptId?: string): Promise<number> {
    await this.ready()
    const { rows } = await this.#query<{ expires_at: string }>(
      `DELETE FROM ${this.#t.sessions} WHERE user_digest = $1 AND id IS DISTINCT FROM $2 RETURNING expires_at`,
      [digest('user', userId), exceptId ?? null])
    return rows.filter((row) => int(row.expires_at) > now).length
  }

  /** One statement by the user index; only rows whose sealed binding names the user are listed. */
  async listUser (userId: string, now: number): Promise<SessionInfo[]> {
    await this.ready()
    const { rows } = await this.#query<SessionRow>(
      `SELECT id, sandbox, created_at, last_seen_at, idle_ttl, absolute_expires_at, expires_at, binding, data FROM ${this.#t.sessions}
       WHERE user_digest = $1 AND expires_at > $2`, [digest('user', userId), now])
    const infos: SessionInfo[] = []
    for (const row of rows) {
      const createdAt = int(row.created_at)
      const lastSeenAt = int(row.last_seen_at)
      const idleTtl = int(row.idle_ttl)
      const absoluteExpiresAt = int(row.absolute_expires_at)
      const expiresAt = Math.min(lastSeenAt + idleTtl, absoluteExpiresAt)
      if (!(expiresAt > now)) continue
      const opened = this.#openBinding(row.id, row.sandbox, idleTtl, createdAt, absoluteExpiresAt, row.binding)
      if (opened === null || opened.userId !== userId) continue
      const info: SessionInfo = { id: row.id, sandbox: row.sandbox, userId, createdAt, lastSeenAt, expiresAt }
      // The device record is a key of the sealed data: opened only for the list.
      const device = this.#openData(row.id, row.data)?.data[DEVICE_KEY]
      if (device !== undefined) info.device = device
      infos.push(info)
    }
    return infos.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
  }

  async kvGet (sandbox: string, key: string, now: number): Promise<string | null> {
    await this.ready()
    const name = digest('value', key)
    const { rows } = await this.#query<{ value: Buffer }>(
      `SELECT value FROM ${this.#t.kv} WHERE sandbox = $1 AND name = $2 AND expires_at > $3`, [sandbox, name, now])
    const sealed = rows[0]?.value
    if (sealed === undefined) return null
    const plain = this.#open(sealed, 'value', sandbox, key)
    if (plain === null) return null
    if (this.#keyring.isStale(sealed)) {
      // Compare and set: only while it still holds what was read.
      await this.#query(`UPDATE ${this.#t.kv} SET value = $4 WHERE sandbox = $1 AND name = $2 AND value = $3`,
        [sandbox, name, sealed, this.#seal(plain, 'value', sandbox, key)])
    }
    return plain.toString('utf8')
  }

  async kvSet (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<void> {
    await this.ready()
    const name = digest('value', key)
    if (ttl <= 0) {
      await this.#query(`DELETE FROM ${this.#t.kv} WHERE sandbox = $1 AND name = $2`, [sandbox, name])
      return
    }
    await this.#query(`INSERT INTO ${this.#t.kv} (sandbox, name, value, expires_at) VALUES ($1, $2, $3, $4)
      ON CONFLICT (sandbox, name) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,
    [sandbox, name, this.#seal(value, 'value', sandbox, key), now + ttl])
  }

  async kvDel (sandbox: string, key: string): Promise<boolean> {
    await this.ready()
    const { rowCount } = await this.#query(`DELETE FROM ${this.#t.kv} WHERE sandbox = $1 AND name = $2`, [sandbox, digest('value', key)])
    return (rowCount ?? 0) > 0
  }

  /**
   * One statement: an insert whose conflict updates only an expired row. The conflicting row is locked
   * and its newest version judged, so of parallel adders exactly one succeeds.
   */
  async kvAdd (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<boolean> {
    await this.ready()
    const name = digest('value', key)
    if (ttl <= 0) {
      const { rows } = await this.#query<{ live: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM ${this.#t.kv} WHERE sandbox = $1 AND name = $2 AND expires_at > $3) AS live`, [sandbox, name, now])
      return rows[0]?.live !== true
    }
    const { rowCount } = await this.#query(`INSERT INTO ${this.#t.kv} AS old (sandbox, name, value, expires_at) VALUES ($1, $2, $3, $4)
      ON CONFLICT (sandbox, name) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at WHERE old.expires_at <= $5`,
    [sandbox, name, this.#seal(value, 'value', sandbox, key), now + ttl, now])
    return rowCount === 1
  }

  /** One statement: DELETE ... RETURNING, so of parallel takers exactly one gets the row. */
  async kvTake (sandbox: string, key: string, now: number): Promise<string | null> {
    await this.ready()
    const { rows } = await this.#query<{ value: Buffer, expires_at: string }>(
      `DELETE FROM ${this.#t.kv} WHERE sandbox = $1 AND name = $2 RETURNING value, expires_at`, [sandbox, digest('value', key)])
    const row = rows[0]
    if (row === undefined || int(row.expires_at) <= now) return null
    return this.#open(row.value, 'value', sandbox, key)?.toString('utf8') ?? null
  }

  /** One statement: an upsert that counts in the current window or starts a new one. */
  async increment (key: string, window: number, now: number): Promise<CounterResult> {
    await this.ready()
    const { rows } = await this.#query<{ count: string, reset_at: string }>(
      `INSERT INTO ${this.#t.counters} AS c (name, count, reset_at) VALUES ($1, 1, $2::bigint + $3::bigint)
       ON CONFLICT (name) DO UPDATE SET
         count = CASE WHEN c.reset_at <= $2::bigint THEN 1 ELSE c.count + 1 END,
         reset_at = CASE WHEN c.reset_at <= $2::bigint THEN $2::bigint + $3::bigint ELSE c.reset_at END
       RETURNING count, reset_at`, [digest('counter', key), now, window])
    return { count: int(rows[0]!.count), resetAt: int(rows[0]!.reset_at) }
  }

  async resetCounter (key: string): Promise<void> {
    await this.ready()
    await this.#query(`DELETE FROM ${this.#t.counters} WHERE name = $1`, [digest('counter', key)])
  }

  /**
   * Deletes rows past their deadline, in batches of `sweepBatch` taken in deadline order by the deadline
   * index (`FOR UPDATE SKIP LOCKED`: rows in use are left for the next sweep; instances sweeping at once
   * take different rows). Returns how many rows went. Lookups judge expiry themselves, so this is
   * tidying only.
   */
  async sweep (now: number): Promise<number> {
    if (this.#closed || this.#sweeping) return 0
    this.#sweeping = true
    try {
      await this.ready()
      const { sessions, kv, counters } = this.#t
      const statements = [
        `DELETE FROM ${sessions} WHERE id IN (SELECT id FROM ${sessions} WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE ` +
          'SKIP LOCKED)',
        `DELETE FROM ${kv} WHERE (sandbox, name) IN (SELECT sandbox, name FROM ${kv} WHERE expires_at <= $1 ORDER BY expires_at LIMIT ` +
          '$2 FOR UPDATE SKIP LOCKED)',
        `DELETE FROM ${counters} WHERE name IN (SELECT name FROM ${counters} WHERE reset_at <= $1 ORDER BY reset_at LIMIT $2 FOR UPDATE ` +
          'SKIP LOCKED)'
      ]
      let total = 0
      for (const statement of statements) {
        for (let batch = 0; batch < SWEEP_MAX_BATCHES && !this.#closed; batch++) {
          const deleted = (await this.#query(statement, [now, this.#sweepBatch])).rowCount ?? 0
          total += deleted
          if (deleted < this.#sweepBatch) break
        }
      }
      return total
    } finally {
      this.#sweeping = false
    }
  }

  /** Stops this store and its sweep (later calls fail with FST_XEMS_STORE_CLOSED). The pool stays open: it is yours. */
  async close (): Promise<void> {
    this.#closed = true
    if (this.#sweepTimer !== null) clearInterval(this.#sweepTimer)
  }

  #assertOpen (): void {
    if (this.#closed) throw xemsError('FST_XEMS_STORE_CLOSED')
  }

  async #query<R extends QueryResultRow = QueryResultRow> (
    text: string, values: unknown[]
  ): Promise<{ rows: R[], rowCount: number | null }> {
    return await this.#connected(async (query) => await query<R>(text, values), false)
  }

  async #transaction<T> (work: (query: Query, defer: Defer) => Promise<T>): Promise<T> {
    return await this.#connected(work, true)
  }

  /**
   * Runs `work` on one connection of the pool, in a transaction when asked (READ COMMITTED, with the
   * timeout as statement_timeout and lock_timeout; BEGIN goes with the first statement, COMMIT with the
   * write `work` deferred, so a read-then-write transaction is 2 round trips), within `timeout` ms
   * from asking the pool for a connection. Past it, the call fails and the connection is destroyed (its
   * transaction, if the server still has it, rolls back when the connection goes; a COMMIT already sent
   * may have happened: the caller treats the outcome as unknown, and the rotation rules tolerate that).
   */
  async #connected<T> (work: (query: Query, defer: Defer) => Promise<T>, transaction: boolean, timeout = this.#timeout): Promise<T> {
    this.#assertOpen()
    let client: PoolClient | null = null
    let done = false
    const onError = (): void => {}
    const finish = (destroy: boolean): void => {
      if (done || client === null) return
      done = true
      client.off('error', onError)
      if (destroy) {
        client.release(true)
        ;(client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream?.destroy?.()
      } else {
        client.release()
      }
    }
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        finish(true)
        done = true
        reject(new Error(`PostgresStore: no answer from PostgreSQL within ${timeout} ms`))
      }, timeout)
    })
    const attempt = (async () => {
      const connected = await this.#pool.connect()
      if (done) { connected.release(true); throw new Error('PostgresStore: timed out') }
      client = connected
      client.on('error', onError)
      const plain: Query = async (text, values) => await connected.query(text, values)
      if (!transaction) {
        try {
          const result = await work(plain, () => { throw new TypeError('PostgresStore: defer outside a transaction') })
          finish(false)
          return result
        } catch (err) {
          finish(!isXemsError(err) && !isStatementError(err))
          throw err
        }
      }
      // BEGIN travels with the transaction's first statement, and COMMIT with its last write, each as one
      // simple query with the values inlined as literals (inline): 2 round trips for a read-and-write.
      const begin = `BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL statement_timeout = ${timeout}; SET LOCAL lock_timeout = ${timeout}`
      let begun = false
      let last: string | null = null
      const query: Query = async <R extends QueryResultRow>(text: string, values?: unknown[]) => {
        if (begun) return await connected.query<R>(text, values)
        begun = true
        const results = await connected.query(`${begin}; ${inline(text, values ?? [])}`) as unknown as Array<{
          rows: R[]
          rowCount: number | null
        }>
        return results[results.length - 1]!
      }
      const defer: Defer = (text, values) => { last = inline(text, values) }
      try {
        const result = await work(query, defer)
        if (!begun) {
          if (last !== null) await connected.query(`${begin}; ${last as string}; COMMIT`)
        } else {
          await connected.query(last === null ? 'COMMIT' : `${last as string}; COMMIT`)
        }
        finish(false)
        return result
      } catch (err) {
        const reusable = !begun || await connected.query('ROLLBACK').then(() => true, () => false)
        finish(!reusable)
        throw err
      }
    })()
    attempt.catch(() => {})
    try {
      return await Promise.race([attempt, expired])
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * The session's row, locked until the transaction ends; null (the row deleted) when it is past its
   * deadline, judged here by `now` whatever the sweep has done; null when its binding does not open.
   */
  async #lock (query: Query, defer: Defer, id: string, now: number): Promise<Loaded | null> {
    const { rows } = await query<SessionRow>(`SELECT * FROM ${this.#t.sessions} WHERE id = $1 FOR UPDATE`, [id])
    const row = rows[0]
    if (row === undefined) return null
    const createdAt = int(row.created_at)
    const idleTtl = int(row.idle_ttl)
    const absoluteExpiresAt = int(row.absolute_expires_at)
    if (!(Math.min(int(row.last_seen_at) + idleTtl, absoluteExpiresAt) > now)) {
      defer(`DELETE FROM ${this.#t.sessions} WHERE id = $1`, [id])
      return null
    }
    const opened = this.#openBinding(id, row.sandbox, idleTtl, createdAt, absoluteExpiresAt, row.binding)
    const state = row.rotation
    if (opened === null || state === null || typeof state.cur !== 'string' || !Array.isArray(state.past)) return null
    return { row, state, userId: opened.userId, createdAt, idleTtl, absoluteExpiresAt, stale: opened.stale }
  }

  /** Writes the row back: lastSeenAt = now, and what changed. Returns the new deadline. */
  #write (defer: Defer, loaded: Loaded, now: number, change: { rotation: boolean, data: EncodedData | null }): number {
    const { row } = loaded
    const expiresAt = Math.min(now + loaded.idleTtl, loaded.absoluteExpiresAt)
    const sets = ['last_seen_at = $2', 'expires_at = $3']
    const values: unknown[] = [row.id, now, expiresAt]
    const set = (column: string, value: unknown): void => { values.push(value); sets.push(`${column} = $${values.length}`) }
    if (change.rotation) set('rotation', JSON.stringify(loaded.state))
    if (loaded.stale) {
      set('sandbox', row.sandbox)
      set('idle_ttl', loaded.idleTtl)
      set('user_digest', loaded.userId === undefined ? null : digest('user', loaded.userId))
      set('binding', this.#binding(row.id, row.sandbox, loaded.idleTtl, loaded.createdAt, loaded.absoluteExpiresAt, loaded.userId))
    }
    if (change.data !== null) set('data', this.#sealData(row.id, change.data))
    defer(`UPDATE ${this.#t.sessions} SET ${sets.join(', ')} WHERE id = $1`, values)
    return expiresAt
  }

  #session (loaded: Loaded, data: EncodedData, now: number): StoredSession {
    const session: StoredSession = {
      id: loaded.row.id,
      sandbox: loaded.row.sandbox,
      data,
      createdAt: loaded.createdAt,
      lastSeenAt: now,
      idleTtl: loaded.idleTtl,
      absoluteExpiresAt: loaded.absoluteExpiresAt
    }
    if (loaded.userId !== undefined) session.userId = loaded.userId
    return session
  }

  async #format (query: Query): Promise<number | null> {
    const { rows } = await query<{ value: Buffer }>(`SELECT value FROM ${this.#t.meta} WHERE name = 'format'`)
    if (rows[0] === undefined) return null
    const found = Number(rows[0].value.toString('utf8'))
    if (!Number.isInteger(found)) throw this.#formatError(rows[0].value.toString('utf8').slice(0, 20))
    return found
  }

  async #checkCanary (): Promise<void> {
    await this.#connected(async (query) => {
      await query('SELECT pg_advisory_xact_lock(hashtext($1))', [this.#lockKey()])
      let format: number | null
      try {
        format = await this.#format(query)
      } catch (err) {
        const code = (err as { code?: unknown }).code
        if (code !== UNDEFINED_TABLE && code !== UNDEFINED_SCHEMA) throw err
        format = null
      }
      if (format === null) {
        throw xemsError('FST_XEMS_STORE_FORMAT', [this.#tablesName(), 'none (there are no tables)', POSTGRES_FORMAT_VERSION,
          'Call `await store.migrate()` at start-up, or run docs/postgres-schema.sql. See docs/stores.md, "PostgreSQL".'])
      }
      if (format !== POSTGRES_FORMAT_VERSION) throw this.#formatError(String(format))
      const { rows } = await query<{ name: string, value: Buffer }>(`SELECT name, value FROM ${this.#t.meta} WHERE name LIKE 'canary:%'`)
      const newest = this.#rings[0]!
      let opened = false
      let hasNewest = false
      for (const row of rows) {
        const id = row.name.slice('canary:'.length)
        const mine = this.#rings.find((entry) => entry.id === id)
        if (mine === undefined) continue
        if (id === newest.id) hasNewest = true
        if (mine.ring.open(row.value, this.#aad('canary', id))?.toString('utf8') !== CANARY_TEXT) {
          throw xemsError(
            'FST_XEMS_WRONG_SECRET', [`the PostgresStore canary "${row.name}"`, 'secret', 'its key id matches, so it was tampered with']
          )
        }
        opened = true
      }
      if (rows.length > 0 && !opened) {
        throw xemsError('FST_XEMS_WRONG_SECRET', [
          `the PostgresStore data in schema "${this.schema}" with prefix "${this.tablePrefix}"`, 'secret',
          'it was written with another secret. Use that secret (or list it as an older one: [new, old]), ' +
            'or choose another schema or prefix.'
        ])
      }
      if (!hasNewest) {
        await query(`INSERT INTO ${this.#t.meta} (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
          [`canary:${newest.id}`, newest.ring.seal(CANARY_TEXT, this.#aad('canary', newest.id))])
      }
    }, true)
  }

  #formatError (found: string): XemsError {
    return xemsError('FST_XEMS_STORE_FORMAT', [this.#tablesName(), found, POSTGRES_FORMAT_VERSION,
      'Use the version that wrote them, or another schema or prefix. See docs/stores.md, "PostgreSQL".'])
  }

  #tablesName (): string {
    return `the PostgresStore tables in schema "${this.schema}" with prefix "${this.tablePrefix}"`
  }

  #lockKey (): string {
    return `${LOCK_LABEL}/${this.schema}/${this.tablePrefix}`
  }

  #aad (...parts: Array<string | number>): string {
    return JSON.stringify([this.schema, this.tablePrefix, ...parts])
  }

  #seal (plain: string | Buffer, ...place: Array<string | number>): Buffer {
    return this.#keyring.seal(plain, this.#aad(...place))
  }

  #open (sealed: Buffer, ...place: Array<string | number>): Buffer | null {
    return this.#keyring.open(sealed, this.#aad(...place))
  }

  /** The user id (or nothing) sealed to the row's id, sandbox, idle ttl and times. */
  #binding (
    id: string, sandbox: string, idleTtl: number, createdAt: number, absoluteExpiresAt: number, userId: string | undefined
  ): Buffer {
    return this.#seal(userId === undefined ? '' : `u${userId}`, 'session', id, sandbox, idleTtl, createdAt, absoluteExpiresAt)
  }

  #openBinding (id: string, sandbox: string, idleTtl: number, createdAt: number, absoluteExpiresAt: number, sealed: Buffer):
  { userId: string | undefined, stale: boolean } | null {
    const plain = this.#open(sealed, 'session', id, sandbox, idleTtl, createdAt, absoluteExpiresAt)
    if (plain === null) return null
    const text = plain.toString('utf8')
    return { userId: text === '' ? undefined : text.slice(1), stale: this.#keyring.isStale(sealed) }
  }

  /** The data as a list of [key, JSON text] pairs (no object keys in transit: `__proto__` stays a key). */
  #sealData (id: string, data: EncodedData): Buffer {
    return this.#seal(JSON.stringify(Object.entries(data)), 'session', id, 'data')
  }

  #openData (id: string, sealed: Buffer): { data: EncodedData, stale: boolean } | null {
    const plain = this.#open(sealed, 'session', id, 'data')
    if (plain === null) return null
    let pairs: unknown
    try { pairs = JSON.parse(plain.toString('utf8')) } catch { return null }
    if (!Array.isArray(pairs)) return null
    const data = Object.create(null) as EncodedData
    for (const pair of pairs as unknown[]) {
      if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') return null
      data[pair[0]] = pair[1]
    }
    return { data, stale: this.#keyring.isStale(sealed) }
  }
}

/** An error PostgreSQL answered for one statement (a constraint, a syntax error): the connection is fine. */
function isStatementError (err: unknown): boolean {
  return typeof (err as { code?: unknown } | null)?.code === 'string' && typeof (err as { severity?: unknown }).severity === 'string'
}
