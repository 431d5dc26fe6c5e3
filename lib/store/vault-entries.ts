/**
 * The entries a MemoryStore vault holds. Every entry is the resulting state of one keyed item (a
 * session's core fields, its data, one data key, one token, a value, a counter) or its removal, so
 * applying entries is idempotent and a replay ends in exactly the state that was written. Keeping
 * tokens and data keys as items of their own keeps a rotation small (its core, two tokens and the
 * patched keys, not the whole session with its sixteen remembered tokens).
 *
 * A snapshot holds puts only; a journal record holds what a group of operations changed. Encoded as
 * JSON arrays, tag first:
 *
 * ```
 * ["S", sid, sandbox, userId|null, createdAt, lastSeenAt, idleTtl, absoluteExpiresAt, currentKey]  session core
 * ["T", sid, lastSeenAt]                          a session was used (only lastSeenAt changed)
 * ["D", sid]                                      a session ended: its core, data and tokens are gone
 * ["A", sid, {key: json, ...}]                    all the data of a session
 * ["P", sid, key, json|null]                      one data key set, or deleted
 * ["K", tokenKey, sid]                            a token (the session's current one)
 * ["K", tokenKey, sid, nextKey, graceBox, graceUntil]   a rotated token, with what it rotated to
 * ["Y", tokenKey]                                 a token forgotten
 * ["V", valueKey, value, expiresAt]   ["X", valueKey]    a value set / removed
 * ["C", key, count, resetAt]          ["Z", key]         a counter set / removed
 * ```
 *
 * A session's rotated tokens are not listed in order anywhere: each one names the token it rotated
 * to, so the order is the chain walked back from the current token.
 */

export interface SessionCore {
  sid: string
  sandbox: string
  userId: string | null
  createdAt: number
  lastSeenAt: number
  idleTtl: number
  absoluteExpiresAt: number
  currentKey: string
}

export interface TokenNext {
  key: string
  box: string
  graceUntil: number
}

export type VaultEntry =
  | { tag: 'S', core: SessionCore }
  | { tag: 'T', sid: string, lastSeenAt: number }
  | { tag: 'D', sid: string }
  | { tag: 'A', sid: string, data: Record<string, string> }
  | { tag: 'P', sid: string, key: string, value: string | null }
  | { tag: 'K', key: string, sid: string, next: TokenNext | null }
  | { tag: 'Y', key: string }
  | { tag: 'V', key: string, value: string, expiresAt: number }
  | { tag: 'X', key: string }
  | { tag: 'C', key: string, count: number, resetAt: number }
  | { tag: 'Z', key: string }

export function encodeCore (s: SessionCore): string {
  return JSON.stringify(['S', s.sid, s.sandbox, s.userId, s.createdAt, s.lastSeenAt, s.idleTtl, s.absoluteExpiresAt, s.currentKey])
}

export function encodeTouch (sid: string, lastSeenAt: number): string {
  return JSON.stringify(['T', sid, lastSeenAt])
}

export function encodeSessionRemoved (sid: string): string {
  return JSON.stringify(['D', sid])
}

export function encodeAllData (sid: string, data: Record<string, string>): string {
  return JSON.stringify(['A', sid, data])
}

export function encodeDataKey (sid: string, key: string, value: string | null): string {
  return JSON.stringify(['P', sid, key, value])
}

export function encodeToken (key: string, sid: string, next: TokenNext | null): string {
  return JSON.stringify(next === null ? ['K', key, sid] : ['K', key, sid, next.key, next.box, next.graceUntil])
}

export function encodeTokenRemoved (key: string): string {
  return JSON.stringify(['Y', key])
}

export function encodeValue (key: string, value: string, expiresAt: number): string {
  return JSON.stringify(['V', key, value, expiresAt])
}

export function encodeValueRemoved (key: string): string {
  return JSON.stringify(['X', key])
}

export function encodeCounter (key: string, count: number, resetAt: number): string {
  return JSON.stringify(['C', key, count, resetAt])
}

export function encodeCounterRemoved (key: string): string {
  return JSON.stringify(['Z', key])
}

/**
 * Reads one entry; throws when it does not have the shape of one. An entry that authenticated yet
 * does not parse is a bug or a foreign format version, never an attack.
 */
export function decodeEntry (raw: unknown): VaultEntry {
  if (!Array.isArray(raw)) throw malformed()
  const a = raw as unknown[]
  switch (a[0]) {
    case 'S': {
      const [, sid, sandbox, userId, createdAt, lastSeenAt, idleTtl, absoluteExpiresAt, currentKey] = a
      if (a.length !== 9 || !isString(sid) || !isString(sandbox) || !(userId === null || isString(userId)) || !isTime(createdAt) ||
        !isTime(lastSeenAt) || !isTime(idleTtl) || !isTime(absoluteExpiresAt) || !isString(currentKey)) throw malformed()
      return { tag: 'S', core: { sid, sandbox, userId, createdAt, lastSeenAt, idleTtl, absoluteExpiresAt, currentKey } }
    }
    case 'T':
      if (a.length !== 3 || !isString(a[1]) || !isTime(a[2])) throw malformed()
      return { tag: 'T', sid: a[1], lastSeenAt: a[2] }
    case 'D':
      if (a.length !== 2 || !isString(a[1])) throw malformed()
      return { tag: 'D', sid: a[1] }
    case 'A': {
      const data = a[2]
      if (a.length !== 3 || !isString(a[1]) || data === null || typeof data !== 'object' || Array.isArray(data) || !Object.values(data).every(isString)) throw malformed()
      // Spread defines own properties, so a key named __proto__ stays a key (as in MemoryStore.create).
      return { tag: 'A', sid: a[1], data: { ...(data as Record<string, string>) } }
    }
    case 'P':
      if (a.length !== 4 || !isString(a[1]) || !isString(a[2]) || !(a[3] === null || isString(a[3]))) throw malformed()
      return { tag: 'P', sid: a[1], key: a[2], value: a[3] }
    case 'K':
      if (a.length === 3 && isString(a[1]) && isString(a[2])) return { tag: 'K', key: a[1], sid: a[2], next: null }
      if (a.length !== 6 || !isString(a[1]) || !isString(a[2]) || !isString(a[3]) || !isString(a[4]) || !isTime(a[5])) throw malformed()
      return { tag: 'K', key: a[1], sid: a[2], next: { key: a[3], box: a[4], graceUntil: a[5] } }
    case 'Y':
      if (a.length !== 2 || !isString(a[1])) throw malformed()
      return { tag: 'Y', key: a[1] }
    case 'V':
      if (a.length !== 4 || !isString(a[1]) || !isString(a[2]) || !isTime(a[3])) throw malformed()
      return { tag: 'V', key: a[1], value: a[2], expiresAt: a[3] }
    case 'X':
      if (a.length !== 2 || !isString(a[1])) throw malformed()
      return { tag: 'X', key: a[1] }
    case 'C':
      if (a.length !== 4 || !isString(a[1]) || !isTime(a[2]) || !isTime(a[3])) throw malformed()
      return { tag: 'C', key: a[1], count: a[2], resetAt: a[3] }
    case 'Z':
      if (a.length !== 2 || !isString(a[1])) throw malformed()
      return { tag: 'Z', key: a[1] }
    default:
      throw malformed()
  }
}

function isString (value: unknown): value is string {
  return typeof value === 'string'
}

function isTime (value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

function malformed (): Error {
  return new Error('an entry of unknown shape')
}
