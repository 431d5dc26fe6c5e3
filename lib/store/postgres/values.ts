/**
 * The values of the `from(sandbox)` API and the counters in PostgreSQL: one statement each (a value sealed
 * under an older secret is rewritten by a second, compare-and-set). Every value is sealed for its sandbox
 * and key; names are digests.
 */
import type { CounterResult } from '../contract.js'
import type { Query } from './connection.js'
import { int } from './rows.js'
import { digest, type PostgresSealing } from './sealing.js'
import type { PostgresStatements } from './sql.js'

export class PostgresValues {
  /** One statement on a connection of the store's pool, within the store's timeout. */
  readonly #query: Query
  readonly #sql: PostgresStatements
  readonly #sealing: PostgresSealing

  constructor (query: Query, sql: PostgresStatements, sealing: PostgresSealing) {
    this.#query = query
    this.#sql = sql
    this.#sealing = sealing
  }

  async get (sandbox: string, key: string, now: number): Promise<string | null> {
    const name = digest('value', key)
    const { rows } = await this.#query<{ value: Buffer }>(this.#sql.kvGet, [sandbox, name, now])
    const sealed = rows[0]?.value
    if (sealed === undefined) return null
    const plain = this.#sealing.open(sealed, 'value', sandbox, key)
    if (plain === null) return null
    if (this.#sealing.isStale(sealed)) {
      // Compare and set: only while it still holds what was read.
      await this.#query(this.#sql.kvRewrite, [sandbox, name, sealed, this.#sealing.seal(plain, 'value', sandbox, key)])
    }
    return plain.toString('utf8')
  }

  async set (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<void> {
    const name = digest('value', key)
    if (ttl <= 0) {
      await this.#query(this.#sql.kvDelete, [sandbox, name])
      return
    }
    await this.#query(this.#sql.kvSet, [sandbox, name, this.#sealing.seal(value, 'value', sandbox, key), now + ttl])
  }

  async del (sandbox: string, key: string): Promise<boolean> {
    const { rowCount } = await this.#query(this.#sql.kvDelete, [sandbox, digest('value', key)])
    return (rowCount ?? 0) > 0
  }

  /**
   * One statement: an insert whose conflict updates only an expired row. The conflicting row is locked
   * and its newest version judged, so of parallel adders exactly one succeeds.
   */
  async add (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<boolean> {
    const name = digest('value', key)
    if (ttl <= 0) {
      const { rows } = await this.#query<{ live: boolean }>(this.#sql.kvLive, [sandbox, name, now])
      return rows[0]?.live !== true
    }
    const { rowCount } = await this.#query(this.#sql.kvAdd,
      [sandbox, name, this.#sealing.seal(value, 'value', sandbox, key), now + ttl, now])
    return rowCount === 1
  }

  /** One statement: DELETE ... RETURNING, so of parallel takers exactly one gets the row. */
  async take (sandbox: string, key: string, now: number): Promise<string | null> {
    const { rows } = await this.#query<{ value: Buffer, expires_at: string }>(this.#sql.kvTake, [sandbox, digest('value', key)])
    const row = rows[0]
    if (row === undefined || int(row.expires_at) <= now) return null
    return this.#sealing.open(row.value, 'value', sandbox, key)?.toString('utf8') ?? null
  }

  /** One statement: an upsert that counts in the current window or starts a new one. */
  async increment (key: string, window: number, now: number): Promise<CounterResult> {
    const { rows } = await this.#query<{ count: string, reset_at: string }>(this.#sql.increment, [digest('counter', key), now, window])
    return { count: int(rows[0]!.count), resetAt: int(rows[0]!.reset_at) }
  }

  async resetCounter (key: string): Promise<void> {
    await this.#query(this.#sql.resetCounter, [digest('counter', key)])
  }
}
