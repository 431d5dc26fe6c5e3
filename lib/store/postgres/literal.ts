/**
 * SQL literals, for the simple queries that carry a transaction's BEGIN with its first statement and its
 * COMMIT with its last write (one round trip each instead of two). Only the store's own values pass
 * through here: strings, finite numbers, booleans, null and Buffers.
 */

/** A string as a standard SQL literal: quotes doubled; with a backslash, an E'' literal with it doubled too. */
export function escapeLiteral (text: string): string {
  const hasBackslash = text.includes('\\')
  const body = text.replace(/'/g, "''").replace(/\\/g, '\\\\')
  return hasBackslash ? ` E'${body}'` : `'${body}'`
}

/**
 * `text` with its $n placeholders replaced by SQL literals of `values`, for a simple query (one round
 * trip for several statements). Strings go through escapeLiteral (as pg's does), bytes as hex through
 * decode(), numbers must be finite, anything else is refused.
 */
export function inline (text: string, values: unknown[]): string {
  return text.replace(/\$(\d+)/g, (_match, n: string) => literal(values[Number(n) - 1]))
}

export function literal (value: unknown): string {
  if (value === null || value === undefined) return 'NULL'
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('PostgresStore: a number to inline is not finite')
    return String(value)
  }
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE'
  if (Buffer.isBuffer(value)) return `decode('${value.toString('hex')}', 'hex')`
  if (typeof value === 'string') return escapeLiteral(value)
  throw new TypeError(`PostgresStore: cannot inline a ${typeof value}`)
}
