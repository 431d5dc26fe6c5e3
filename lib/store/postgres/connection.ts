import type { Pool, PoolClient, QueryResultRow } from 'pg'
import { isXemsError } from '../../errors.js'
import { inline } from './literal.js'

export type Query = <R extends QueryResultRow = QueryResultRow>(
  text: string, values?: unknown[]
) => Promise<{ rows: R[], rowCount: number | null }>
/** A transaction's last write, sent with its COMMIT in one round trip (its result is not needed). */
export type Defer = (text: string, values: unknown[]) => void

/**
 * Runs `work` on one connection of the pool, in a transaction when asked (READ COMMITTED, with the
 * timeout as statement_timeout and lock_timeout; BEGIN goes with the first statement, COMMIT with the
 * write `work` deferred, so a read-then-write transaction is 2 round trips), within `timeout` ms
 * from asking the pool for a connection. Past it, the call fails and the connection is destroyed (its
 * transaction, if the server still has it, rolls back when the connection goes; a COMMIT already sent
 * may have happened: the caller treats the outcome as unknown, and the rotation rules tolerate that).
 */
export async function connected<T> (
  pool: Pool, work: (query: Query, defer: Defer) => Promise<T>, transaction: boolean, timeout: number
): Promise<T> {
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
    const connected = await pool.connect()
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

/** An error PostgreSQL answered for one statement (a constraint, a syntax error): the connection is fine. */
function isStatementError (err: unknown): boolean {
  return typeof (err as { code?: unknown } | null)?.code === 'string' && typeof (err as { severity?: unknown }).severity === 'string'
}
