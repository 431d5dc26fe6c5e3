import type { FastifyBaseLogger } from 'fastify'
import { isXemsError, type XemsError } from '../../lib/errors.js'

/** Re-log a continuing outage this often, so it stays visible without a line per request. */
const REMIND_MS = 60_000

/**
 * Logs a session-store outage once per burst: the first failure as an error, a reminder a minute
 * while it lasts, and one line when the store answers again (with how many requests failed).
 * Requests that needed the store answer 503 meanwhile; none of them logs on its own.
 */
export class StoreOutage {
  readonly #log: FastifyBaseLogger
  readonly #now: () => number
  #since: number | null = null
  #failures = 0
  #remindedAt = 0

  constructor (log: FastifyBaseLogger, now: () => number = Date.now) {
    this.#log = log
    this.#now = now
  }

  /** True when `err` is a store failure (and records it). */
  failed (err: unknown): err is XemsError {
    if (!isXemsError(err) || (err.code !== 'FST_XEMS_STORE_UNAVAILABLE' && err.code !== 'FST_XEMS_STORE_CLOSED')) return false
    const now = this.#now()
    this.#failures++
    if (this.#since === null || now - this.#remindedAt >= REMIND_MS) {
      const cause = err.cause instanceof Error ? err.cause.message : undefined
      this.#log.error(
        { xems: 'store-unavailable', failures: this.#failures, since: this.#since ?? now, cause },
        'xems: the session store is unavailable; requests that need it answer 503'
      )
      this.#since ??= now
      this.#remindedAt = now
    }
    return true
  }

  /** A store call succeeded: ends an outage in progress. */
  succeeded (): void {
    if (this.#since === null) return
    this.#log.warn(
      { xems: 'store-recovered', failures: this.#failures, downMs: this.#now() - this.#since }, 'xems: the session store answers again'
    )
    this.#since = null
    this.#failures = 0
  }
}
