/**
 * The calls of PostgresStore on its pool: one statement, or one transaction, each on one connection within
 * the store's timeout and refused once the store is closed; and, inside a transaction, a session's row locked.
 */
import type { Pool, QueryResultRow } from 'pg'
import { connected, type Defer, type Query } from './connection.js'
import { deadlineOf, type Loaded, loadedOf, type SessionRow } from './rows.js'
import type { PostgresSealing } from './sealing.js'
import type { PostgresStatements } from './sql.js'

export class PostgresCalls {
  readonly #pool: Pool
  readonly #timeout: number
  readonly #sql: PostgresStatements
  readonly #sealing: PostgresSealing
  /** Throws FST_XEMS_STORE_CLOSED once the store is closed. */
  readonly #assertOpen: () => void

  constructor (pool: Pool, timeout: number, sql: PostgresStatements, sealing: PostgresSealing, assertOpen: () => void) {
    this.#pool = pool
    this.#timeout = timeout
    this.#sql = sql
    this.#sealing = sealing
    this.#assertOpen = assertOpen
  }

  async query<R extends QueryResultRow = QueryResultRow> (
    text: string, values: unknown[]
  ): Promise<{ rows: R[], rowCount: number | null }> {
    return await this.connected(async (query) => await query<R>(text, values), false)
  }

  async transaction<T> (work: (query: Query, defer: Defer) => Promise<T>): Promise<T> {
    return await this.connected(work, true)
  }

  /** One call on one connection of the pool, bounded by the timeout (see connected in connection.ts). */
  async connected<T> (work: (query: Query, defer: Defer) => Promise<T>, transaction: boolean, timeout = this.#timeout): Promise<T> {
    this.#assertOpen()
    return await connected(this.#pool, work, transaction, timeout)
  }

  /**
   * The session's row, locked until the transaction ends; null (the row deleted) when it is past its
   * deadline, judged here by `now` whatever the sweep has done; null when its binding does not open.
   */
  async lock (query: Query, defer: Defer, id: string, now: number): Promise<Loaded | null> {
    const row = await this.lockRow(query, defer, id, now)
    return row === null ? null : loadedOf(row, this.#sealing)
  }

  /** The row, locked; null when there is none or it is past its deadline (then it is deleted). */
  async lockRow (query: Query, defer: Defer, id: string, now: number): Promise<SessionRow | null> {
    const { rows } = await query<SessionRow>(this.#sql.lockSession, [id])
    const row = rows[0]
    if (row === undefined) return null
    if (!(deadlineOf(row) > now)) {
      defer(this.#sql.deleteSession, [id])
      return null
    }
    return row
  }
}
