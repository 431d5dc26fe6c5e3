import { isXemsError, xemsError } from '../../errors.js'
import type {
  CommitInput, CommitResult, CounterResult, CreateInput, EncodedData, LimitResult, MigrateInput, PresentedCheck, ResolveInput,
  ResolveResult, SessionInfo, SessionStore
} from '../contract.js'
import { DEVICE_KEY } from '../contract.js'
import { commitChain, markPresented, matchToken, newRotationState, rotate } from '../rotation.js'
import { PostgresCalls } from './calls.js'
import type { Query } from './connection.js'
import { checkFormatAndCanary, lockKeyOf, migrateTables, type PostgresPlace } from './format.js'
import { checkPostgresOptions, type PostgresStoreOptions } from './options.js'
import { int, loadedOf, rotationOf, type SessionRow, sessionInfoOf, storedSession, writeBack } from './rows.js'
import { digest, PostgresSealing } from './sealing.js'
import { postgresSchemaSql, tableNames, type TableNames } from './schema.js'
import { type MigrationParts, migrateSession } from './session-migration.js'
import { postgresStatements, type PostgresStatements, sweepStatements } from './sql.js'
import { admitUser } from './users.js'
import { PostgresValues } from './values.js'

export type { PostgresStoreOptions, PostgresStoreSecret } from './options.js'
export { POSTGRES_SEAL_PURPOSE } from './sealing.js'

/** A sweep stops after this many full batches per table, and continues on its next tick. */
const SWEEP_MAX_BATCHES = 20

const NONE: ResolveResult = Object.freeze({ status: 'none' })
const RETIRED_TOKEN: ResolveResult = Object.freeze({ status: 'retired' })

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
  readonly #calls: PostgresCalls
  readonly #t: TableNames
  readonly #sql: PostgresStatements
  readonly #sweepStatements: string[]
  readonly #sealing: PostgresSealing
  readonly #values: PostgresValues
  readonly #place: PostgresPlace
  readonly #migration: MigrationParts
  readonly #lockKey: string
  readonly #timeout: number
  readonly #sweepBatch: number
  readonly #sweepTimer: NodeJS.Timeout | null = null
  #verified: Promise<void> | null = null
  #closed = false
  #sweeping = false

  constructor (options: PostgresStoreOptions) {
    const { pool, schema, prefix, secrets, timeout, sweepInterval, sweepBatch } = checkPostgresOptions(options)
    this.schema = schema
    this.tablePrefix = prefix
    this.#t = tableNames(schema, prefix)
    this.#sql = postgresStatements(this.#t)
    this.#sweepStatements = sweepStatements(this.#t)
    this.#sealing = new PostgresSealing(secrets, schema, prefix)
    this.#calls = new PostgresCalls(pool, timeout, this.#sql, this.#sealing, () => { this.#assertOpen() })
    this.#values = new PostgresValues(async (text, values = []) => await this.#calls.query(text, values), this.#sql, this.#sealing)
    this.#place = { schema, tablePrefix: prefix, sql: this.#sql, sealing: this.#sealing }
    this.#lockKey = lockKeyOf(schema, prefix)
    this.#migration = { calls: this.#calls, sql: this.#sql, sealing: this.#sealing, sessions: this.#t.sessions, lockKey: this.#lockKey }
    this.#timeout = timeout
    this.#sweepBatch = sweepBatch
    // An idle connection the server ends (a restart, pg_terminate_backend) is an 'error' on the pool,
    // which would crash the process unheard; the pool drops that connection by itself.
    if (pool.listenerCount('error') === 0) pool.on('error', () => {})
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
    await this.ready()
    return await migrateSession(this.#migration, input)
  }

  async #migrateSchema (): Promise<void> {
    this.#assertOpen()
    await this.#calls.connected(async (query) => {
      await migrateTables(query, this.#place)
    }, true, Math.max(this.#timeout, 30_000))
  }

  /**
   * Checks the schema's layout format (FST_XEMS_STORE_FORMAT when it is another, or when there is no
   * schema: run `migrate()`) and the canary (FST_XEMS_BAD_SECRET when the data was written with another
   * secret). The first operation runs it anyway; call it at start-up to fail before serving.
   */
  async ready (): Promise<void> {
    this.#assertOpen()
    const check = async (query: Query): Promise<void> => { await checkFormatAndCanary(query, this.#place) }
    this.#verified ??= this.#calls.connected(check, true).catch((err: unknown) => {
      if (!isXemsError(err)) this.#verified = null
      throw err
    })
    await this.#verified
  }

  /**
   * One statement: an upsert (a record id is created once; a resend rewrites the same session). With a
   * userLimit, one transaction that takes the user's advisory lock, counts and decides (see admitUser, users.ts).
   */
  async create (input: CreateInput): Promise<LimitResult | void> {
    await this.ready()
    const { id } = input
    const expiresAt = Math.min(input.now + input.idleTtl, input.absoluteExpiresAt)
    if (expiresAt <= input.now) {
      return input.userId !== undefined && input.userLimit !== undefined ? { status: 'admitted', ended: [] } : undefined
    }
    const state = newRotationState(input.tokenKey)
    const insert = this.#sql.insertSession
    const values = [
      id, input.sandbox, input.userId === undefined ? null : digest('user', input.userId), input.now, input.idleTtl,
      input.absoluteExpiresAt,
      expiresAt, JSON.stringify(state),
      this.#sealing.binding(id, input.sandbox, input.idleTtl, input.now, input.absoluteExpiresAt, input.userId),
      this.#sealing.sealData(id, input.data)
    ]
    const { userId, userLimit } = input
    if (userId === undefined || userLimit === undefined) {
      await this.#calls.query(insert, values)
      return
    }
    return await this.#calls.transaction(async (query, defer) => {
      const admitted = await admitUser(query, this.#sql, this.#lockKey, userId, id, userLimit, input.now)
      if (admitted.status === 'admitted') defer(insert, values)
      return admitted
    })
  }

  /**
   * One transaction: lock the row, match the token, mark it presented, refresh lastSeenAt. The token
   * state decides what the token is (reused, stale, retired) even when the row's binding does not open,
   * as on Redis; only a session handed out needs every seal to open.
   */
  async resolve (input: ResolveInput): Promise<ResolveResult> {
    await this.ready()
    return await this.#calls.transaction(async (query, defer) => {
      const row = await this.#calls.lockRow(query, defer, input.id, input.now)
      const state = row === null ? null : rotationOf(row)
      if (row === null || state === null) return NONE
      const match = matchToken(state, input.tokenKey, input.now)
      if (match.kind === 'reused') {
        if (input.revokeOnReuse) defer(this.#sql.deleteSession, [input.id])
        const reused: ResolveResult = { status: 'reused', id: input.id, sandbox: row.sandbox, revoked: input.revokeOnReuse }
        const userId = loadedOf(row, this.#sealing)?.userId
        if (userId !== undefined) reused.userId = userId
        const device = this.#sealing.openData(input.id, row.data)?.data[DEVICE_KEY]
        if (device !== undefined) reused.device = device
        return reused
      }
      if (match.kind === 'stale') {
        defer(this.#sql.deleteSession, [input.id])
        return NONE
      }
      if (match.kind === 'retired') return RETIRED_TOKEN
      const loaded = loadedOf(row, this.#sealing)
      if (loaded === null) return NONE
      if (input.sandbox !== undefined && row.sandbox !== input.sandbox) return NONE
      const data = this.#sealing.openData(input.id, row.data)
      if (data === null) return NONE
      const presented = match.kind === 'current' && markPresented(state, input.now, input.gracePeriod)
      writeBack(defer, this.#t.sessions, this.#sealing, loaded, input.now, { rotation: presented, data: data.stale ? data.data : null })
      const session = storedSession(loaded, data.data, input.now)
      if (match.kind === 'current') return { status: 'live', session }
      return { status: 'grace', session, chain: match.chain }
    })
  }

  /**
   * One transaction: lock the row, check that the presented token may still write (else 'retired',
   * nothing written), apply the patch, rotate if the presented token is current.
   */
  async commit (input: CommitInput): Promise<CommitResult> {
    await this.ready()
    return await this.#calls.transaction(async (query, defer) => {
      const loaded = await this.#calls.lock(query, defer, input.id, input.now)
      if (loaded === null) return { status: 'gone' }
      const { state } = loaded
      // Judged under the row lock, before anything is written: a token retired by a migration since
      // admission writes nothing, and the transaction ends without an UPDATE.
      const chain = commitChain(state, input.tokenKey, input.migrations)
      if (chain === false) return { status: 'retired' }
      let data: EncodedData | null = null
      const patch = input.patch === null ? [] : Object.entries(input.patch)
      const opened = patch.length > 0 || this.#sealing.isStale(loaded.row.data) ? this.#sealing.openData(input.id, loaded.row.data) : null
      if (opened !== null) {
        data = opened.data
        for (const [key, value] of patch) {
          if (value === null) delete data[key]
          else data[key] = value
        }
      } else if (patch.length > 0) {
        return { status: 'gone' }
      }
      const rotated = input.rotate !== null && state.cur === input.tokenKey &&
        rotate(state, input.rotate.newKey, input.rotate.box, input.now, input.rotate.unseenWindow)
      const expiresAt = writeBack(defer, this.#t.sessions, this.#sealing, loaded, input.now, { rotation: rotated, data })
      if (rotated) return { status: 'ok', rotated: true, expiresAt }
      return { status: 'ok', rotated: false, chain, expiresAt }
    })
  }

  /** One statement. */
  async destroy (id: string, presented?: PresentedCheck): Promise<boolean | 'retired'> {
    await this.ready()
    if (presented === undefined) {
      const { rowCount } = await this.#calls.query(this.#sql.deleteSession, [id])
      return (rowCount ?? 0) > 0
    }
    // A request's logout: under the row lock, only if its token may still write (commitChain).
    return await this.#calls.transaction(async (query) => {
      const { rows } = await query<SessionRow>(this.#sql.lockSession, [id])
      const row = rows[0]
      if (row === undefined) return false
      if (presented.now !== undefined && int(row.expires_at) <= presented.now) {
        await query(this.#sql.deleteSession, [id])
        return false
      }
      // Judged on the token state alone, as on Redis: a retired token ends nothing, readable or not.
      const state = rotationOf(row)
      if (state !== null && commitChain(state, presented.tokenKey, presented.migrations) === false) return 'retired'
      const { rowCount } = await query(this.#sql.deleteSession, [id])
      return (rowCount ?? 0) > 0
    })
  }

  /** One statement: the row, only if it is a live session of the user (another user's id ends nothing). */
  async revokeUserSession (userId: string, id: string, now: number): Promise<boolean> {
    await this.ready()
    const { rowCount } = await this.#calls.query(this.#sql.revokeUserSession, [id, digest('user', userId), now])
    return (rowCount ?? 0) > 0
  }

  /** One statement: every row of the user's digest (but `exceptId`), deleted; counts those still live. */
  async revokeUser (userId: string, now: number, exceptId?: string): Promise<number> {
    await this.ready()
    const { rows } = await this.#calls.query<{ expires_at: string }>(this.#sql.revokeUser, [digest('user', userId), exceptId ?? null])
    return rows.filter((row) => int(row.expires_at) > now).length
  }

  /** One statement by the user index; only rows whose sealed binding names the user are listed. */
  async listUser (userId: string, now: number): Promise<SessionInfo[]> {
    await this.ready()
    const { rows } = await this.#calls.query<SessionRow>(this.#sql.listUser, [digest('user', userId), now])
    const infos: SessionInfo[] = []
    for (const row of rows) {
      const info = sessionInfoOf(row, userId, now, this.#sealing)
      if (info !== null) infos.push(info)
    }
    return infos.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
  }

  async kvGet (sandbox: string, key: string, now: number): Promise<string | null> {
    await this.ready()
    return await this.#values.get(sandbox, key, now)
  }

  async kvSet (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<void> {
    await this.ready()
    await this.#values.set(sandbox, key, value, ttl, now)
  }

  async kvDel (sandbox: string, key: string): Promise<boolean> {
    await this.ready()
    return await this.#values.del(sandbox, key)
  }

  async kvAdd (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<boolean> {
    await this.ready()
    return await this.#values.add(sandbox, key, value, ttl, now)
  }

  async kvTake (sandbox: string, key: string, now: number): Promise<string | null> {
    await this.ready()
    return await this.#values.take(sandbox, key, now)
  }

  async increment (key: string, window: number, now: number): Promise<CounterResult> {
    await this.ready()
    return await this.#values.increment(key, window, now)
  }

  async resetCounter (key: string): Promise<void> {
    await this.ready()
    await this.#values.resetCounter(key)
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
      let total = 0
      for (const statement of this.#sweepStatements) {
        for (let batch = 0; batch < SWEEP_MAX_BATCHES && !this.#closed; batch++) {
          const deleted = (await this.#calls.query(statement, [now, this.#sweepBatch])).rowCount ?? 0
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
}
