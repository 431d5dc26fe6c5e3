/**
 * Reading a session cookie as the client sent it, without @fastify/cookie's decoding:
 *
 * - the value is taken raw: a percent-encoded (or quoted) token is not the token we issued, and is
 *   refused by the token syntax check instead of being decoded into one;
 * - every occurrence of the name counts: a browser sends two cookies of one name when a sibling
 *   subdomain (or a path-scoped cookie) planted a second one ("cookie tossing"). Which one is ours
 *   cannot be told from the request, so two different values are no session at all: neither is
 *   resolved, so neither is rotated and written back over the other.
 *
 * Independent of the token's syntax: the caller checks that (isWellFormedToken).
 */
export type RawCookie =
  | { status: 'absent' }
  | { status: 'one', value: string }
  | { status: 'ambiguous', count: number }

export function readRawCookie (header: string | string[] | undefined, name: string): RawCookie {
  if (header === undefined) return { status: 'absent' }
  const text = Array.isArray(header) ? header.join('; ') : header
  let value: string | undefined
  let count = 0
  let distinct = false
  for (const part of text.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue
    const raw = part.slice(eq + 1).trim()
    count++
    if (value === undefined) value = raw
    else if (raw !== value) distinct = true
  }
  if (value === undefined) return { status: 'absent' }
  return distinct ? { status: 'ambiguous', count } : { status: 'one', value }
}
