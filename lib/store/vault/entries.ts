import type { PastToken } from '../rotation.js'

/**
 * The entries a MemoryStore vault holds. Every entry is the resulting state of one keyed item (a
 * session's core fields with its rotation state, its data, one data key, a value, a counter) or its
 * removal, so applying entries is idempotent and a replay ends in exactly the state that was written.
 * Keeping data keys as items of their own keeps a rotation small (the core and the patched keys, not
 * the whole session).
 *
 * A snapshot holds puts only; a journal record holds what a group of operations changed. Encoded as
 * JSON arrays, tag first:
 *
 * ```
 * ["S", id, sandbox, userId|null, createdAt, lastSeenAt, idleTtl, absoluteExpiresAt, cur, seen 0|1,
 *   [[tokenKey, box|null, until], ...]]          session core and rotation state (lib/store/rotation.ts)
 * ["T", id, lastSeenAt]                          a session was used (only lastSeenAt changed)
 * ["D", id]                                      a session ended: its core and data are gone
 * ["A", id, {key: json, ...}]                    all the data of a session
 * ["P", id, key, json|null]                      one data key set, or deleted
 * ["V", valueKey, value, expiresAt]   ["X", valueKey]    a value set / removed
 * ["C", key, count, resetAt]          ["Z", key]         a counter set / removed
 * ```
 */

export interface SessionCore {
  id: string
  sandbox: string
  userId: string | null
  createdAt: number
  lastSeenAt: number
  idleTtl: number
  absoluteExpiresAt: number
  cur: string
  seen: boolean
  past: readonly PastToken[]
  /** RotationState.migrations (an entry written before it was kept has none: 0). */
  migrations: number
}

export type VaultEntry =
  | { tag: 'S', core: SessionCore }
  | { tag: 'T', id: string, lastSeenAt: number }
  | { tag: 'D', id: string }
  | { tag: 'A', id: string, data: Record<string, string> }
  | { tag: 'P', id: string, key: string, value: string | null }
  | { tag: 'V', key: string, value: string, expiresAt: number }
  | { tag: 'X', key: string }
  | { tag: 'C', key: string, count: number, resetAt: number }
  | { tag: 'Z', key: string }

export function encodeCore (s: SessionCore): string {
  const past = s.past.map((entry) => [entry.key, entry.box, entry.until])
  const fields: unknown[] = [
    'S', s.id, s.sandbox, s.userId, s.createdAt, s.lastSeenAt, s.idleTtl, s.absoluteExpiresAt, s.cur, s.seen ? 1 : 0, past
  ]
  // The migration count only when there is one: an entry of a session that never migrated is as before.
  if (s.migrations !== 0) fields.push(s.migrations)
  return JSON.stringify(fields)
}

export function encodeTouch (id: string, lastSeenAt: number): string {
  return JSON.stringify(['T', id, lastSeenAt])
}

export function encodeSessionRemoved (id: string): string {
  return JSON.stringify(['D', id])
}

export function encodeAllData (id: string, data: Record<string, string>): string {
  return JSON.stringify(['A', id, data])
}

export function encodeDataKey (id: string, key: string, value: string | null): string {
  return JSON.stringify(['P', id, key, value])
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
      const [, id, sandbox, userId, createdAt, lastSeenAt, idleTtl, absoluteExpiresAt, cur, seen, past, migrations = 0] = a
      if ((a.length !== 11 && a.length !== 12) || !isCount(migrations) || !isString(id) || !isString(sandbox) ||
        !(userId === null || isString(userId)) || !isTime(createdAt) || !isTime(lastSeenAt) || !isTime(idleTtl) ||
        !isTime(absoluteExpiresAt) || !isString(cur) || (seen !== 0 && seen !== 1) || !Array.isArray(past)) throw malformed()
      const times = { createdAt, lastSeenAt, idleTtl, absoluteExpiresAt }
      const core: SessionCore = { id, sandbox, userId, ...times, cur, seen: seen === 1, past: past.map(decodePast), migrations }
      return { tag: 'S', core }
    }
    case 'T':
      if (a.length !== 3 || !isString(a[1]) || !isTime(a[2])) throw malformed()
      return { tag: 'T', id: a[1], lastSeenAt: a[2] }
    case 'D':
      if (a.length !== 2 || !isString(a[1])) throw malformed()
      return { tag: 'D', id: a[1] }
    case 'A': {
      const data = a[2]
      if (a.length !== 3 || !isString(a[1]) || data === null || typeof data !== 'object' ||
        Array.isArray(data) || !Object.values(data).every(isString)) {
        throw malformed()
      }
      // Spread defines own properties, so a key named __proto__ stays a key (as in MemoryStore.create).
      return { tag: 'A', id: a[1], data: { ...(data as Record<string, string>) } }
    }
    case 'P':
      if (a.length !== 4 || !isString(a[1]) || !isString(a[2]) || !(a[3] === null || isString(a[3]))) throw malformed()
      return { tag: 'P', id: a[1], key: a[2], value: a[3] }
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

function decodePast (raw: unknown): PastToken {
  if (!Array.isArray(raw) || raw.length !== 3 || !isString(raw[0]) || !(raw[1] === null || isString(raw[1])) || !isTime(raw[2])) {
    throw malformed()
  }
  return { key: raw[0], box: raw[1], until: raw[2] }
}

function isString (value: unknown): value is string {
  return typeof value === 'string'
}

function isCount (value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0
}

function isTime (value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

function malformed (): Error {
  return new Error('an entry of unknown shape')
}
