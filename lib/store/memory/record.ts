/**
 * The records of the MemoryStore (sessions, timed values, counters) and the functions that read and
 * write them, shared by the store (memory-store.ts, values.ts, users.ts) and its persistence (persistence.ts).
 */
import type { EncodedData, SessionInfo, StoredSession } from '../contract.js'
import { DEVICE_KEY } from '../contract.js'
import type { RotationState } from '../rotation.js'
import type { ShardedMap } from './sharded-map.js'

/**
 * One record per session: its fields and its rotation state (lib/store/rotation.ts), nothing else. Times
 * are kept as offsets: small integers, which V8 keeps in the object itself, where a timestamp would be a
 * 16-byte heap number of its own (a million sessions: 48 MB).
 */
export interface MemorySession extends RotationState {
  id: string
  sandbox: string
  /** Always present (undefined without a user): one object shape for every session, fields in place. */
  userId: string | undefined
  data: EncodedData
  /** createdAt − EPOCH (a small integer for about 24 days either side of the process's start). */
  created: number
  /** lastSeenAt − createdAt. */
  seenOffset: number
  idleTtl: number
  /** absoluteExpiresAt − createdAt. */
  lifeSpan: number
}

export const EPOCH = Date.now()

/** `n` as a small integer (V8's Smi, stored in place) whenever it is one; any other number as it is. */
export function small (n: number): number {
  return n >= -0x80000000 && n <= 0x7fffffff && Number.isInteger(n) ? n | 0 : n
}

export function createdOf (session: MemorySession): number {
  return EPOCH + session.created
}

export function lastSeenOf (session: MemorySession): number {
  return EPOCH + session.created + session.seenOffset
}

export function absoluteOf (session: MemorySession): number {
  return EPOCH + session.created + session.lifeSpan
}

export function seen (session: MemorySession, now: number): void {
  session.seenOffset = small(now - createdOf(session))
}

/** Sets the times of a session (its offsets), as created or as loaded. */
export function setTimes (session: MemorySession, createdAt: number, lastSeenAt: number, absoluteExpiresAt: number): void {
  session.created = small(createdAt - EPOCH)
  session.seenOffset = small(lastSeenAt - createdAt)
  session.lifeSpan = small(absoluteExpiresAt - createdAt)
}

export interface TimedValue {
  value: string
  expiresAt: number
}

export interface Counter {
  count: number
  resetAt: number
}

export function sessionExpiresAt (session: MemorySession): number {
  return EPOCH + session.created + Math.min(session.seenOffset + session.idleTtl, session.lifeSpan)
}

/** A copy of a session as the store answers it (resolve). */
export function snapshot (session: MemorySession): StoredSession {
  const copy: StoredSession = {
    id: session.id,
    sandbox: session.sandbox,
    data: { ...session.data },
    createdAt: createdOf(session),
    lastSeenAt: lastSeenOf(session),
    idleTtl: session.idleTtl,
    absoluteExpiresAt: absoluteOf(session)
  }
  if (session.userId !== undefined) copy.userId = session.userId
  return copy
}

/** A session as listUser answers it; `userId` is its user. */
export function sessionInfo (session: MemorySession, userId: string): SessionInfo {
  const info: SessionInfo = {
    id: session.id,
    sandbox: session.sandbox,
    userId,
    createdAt: createdOf(session),
    lastSeenAt: lastSeenOf(session),
    expiresAt: sessionExpiresAt(session)
  }
  const device = session.data[DEVICE_KEY]
  if (device !== undefined) info.device = device
  return info
}

/**
 * Sets a data key as an own property: `__proto__` is a key like any other. (Spread copies keep own
 * properties too; plain objects keep V8's fast layout, where null-prototype ones fall into dictionary mode.)
 */
export function setDataKey (data: Record<string, string>, key: string, value: string): void {
  if (key === '__proto__') Object.defineProperty(data, key, { value: flat(value), enumerable: true, writable: true, configurable: true })
  else data[key] = flat(value)
}

/**
 * V8 keeps a string built in pieces (JSON.stringify of a larger value is one) as a tree of fragments;
 * converting it to a number flattens it in place. Kept for hours, a flat string is ~90 bytes smaller
 * per session value (bench/memory.ts --breakdown).
 */
export function flat (text: string): string {
  void Number(text)
  return text
}

/**
 * A key as the store keeps it (record ids, token keys, value and counter keys): a string of its own. A key
 * sliced from a longer string (sha256Prefix16's record ids and token keys) keeps the whole of it alive, and
 * one built in pieces (`prefix:${name}`) keeps its pieces (~90 to ~300 bytes more per key, by
 * bench/memory.ts --breakdown and test/security/store-growth.test.ts on Node 24); a JSON round trip gives a
 * fresh sequential string.
 */
export function ownKey (key: string): string {
  return JSON.parse(JSON.stringify(key)) as string
}

/**
 * A session's data as it is kept: JSON.parse makes an object with exactly as many in-object slots as it
 * has keys (a literal `{}` reserves four) and flat strings; `__proto__` stays an own key, as JSON.parse
 * defines every key as an own data property.
 */
export function flatData (data: Record<string, string>): Record<string, string> {
  return JSON.parse(JSON.stringify(data)) as Record<string, string>
}

/** The state of a MemoryStore as its persistence reads and replays it: the maps and the user index. */
export interface MemoryState {
  readonly sessions: ShardedMap<MemorySession>
  readonly values: ShardedMap<TimedValue>
  readonly counters: ShardedMap<Counter>
  indexUser: (userId: string, id: string) => void
  unindexUser: (session: MemorySession) => void
  /** Drops a session from memory without journaling it. */
  forgetSession: (session: MemorySession) => void
}
