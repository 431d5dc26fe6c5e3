/**
 * The records of the MemoryStore (sessions, timed values, counters) and the functions that read and
 * write them, shared by the store (memory-store.ts, sessions.ts, values.ts, users.ts) and its
 * persistence (persistence.ts).
 */
import type { DataPatch, EncodedData, SessionInfo, StoredSession } from '../contract.js'
import { DEVICE_KEY } from '../contract.js'
import { NO_PAST, type PastToken, type RotationState } from '../rotation.js'
import { dataValue, headEnd, headIs, headKey, packed, repacked, unpackData } from './data.js'
import { profileOf, type SessionProfile } from './profile.js'
import type { ShardedMap } from './sharded-map.js'

/**
 * One record per session, filed under its id (the map's key: the record does not repeat it). Four fields:
 * - `profile`: the fields most sessions share (profile.ts: sandbox, lifetimes, user, `seen`, `past`),
 *   frozen and replaced on change;
 * - `body`: the current token key and the data, packed into one string (data.ts);
 * - the times, as offsets: small integers, which V8 keeps in the object itself, where a timestamp would be
 *   a 16-byte heap number of its own (a million sessions: 48 MB).
 * The rotation state (lib/store/rotation.ts) and the other fields are getters and setters over these.
 */
export class MemorySession implements RotationState {
  profile: SessionProfile
  /** The current token key, then the data, key → JSON text, packed (data.ts). */
  body: string
  /** createdAt − EPOCH (a small integer for about 24 days either side of the process's start). */
  created: number
  /** lastSeenAt − createdAt. */
  seenOffset: number

  constructor (profile: SessionProfile, body: string, created: number, seenOffset: number) {
    this.profile = profile
    this.body = body
    this.created = created
    this.seenOffset = seenOffset
  }

  /** A session as created or loaded: its data packed, its times set. */
  static of (
    sandbox: string, idleTtl: number, userId: string | undefined, cur: string, seen: boolean, past: readonly PastToken[],
    data: EncodedData, createdAt: number, lastSeenAt: number, absoluteExpiresAt: number, migrations = 0
  ): MemorySession {
    const lifeSpan = small(absoluteExpiresAt - createdAt)
    const profile = profileOf(sandbox, small(idleTtl), lifeSpan, userId, seen, past.length === 0 ? NO_PAST : past, migrations)
    return new MemorySession(profile, packed(cur, data), small(createdAt - EPOCH), small(lastSeenAt - createdAt))
  }

  get sandbox (): string {
    return this.profile.sandbox
  }

  set sandbox (sandbox: string) {
    const p = this.profile
    if (p.sandbox !== sandbox) this.profile = profileOf(sandbox, p.idleTtl, p.lifeSpan, p.userId, p.seen, p.past, p.migrations)
  }

  get idleTtl (): number {
    return this.profile.idleTtl
  }

  set idleTtl (idleTtl: number) {
    const p = this.profile
    if (p.idleTtl !== idleTtl) this.profile = profileOf(p.sandbox, small(idleTtl), p.lifeSpan, p.userId, p.seen, p.past, p.migrations)
  }

  /** absoluteExpiresAt − createdAt. */
  get lifeSpan (): number {
    return this.profile.lifeSpan
  }

  set lifeSpan (lifeSpan: number) {
    const p = this.profile
    if (p.lifeSpan !== lifeSpan) this.profile = profileOf(p.sandbox, p.idleTtl, small(lifeSpan), p.userId, p.seen, p.past, p.migrations)
  }

  /** Undefined without a user. */
  get userId (): string | undefined {
    return this.profile.userId
  }

  set userId (userId: string | undefined) {
    const p = this.profile
    if (p.userId !== userId) this.profile = profileOf(p.sandbox, p.idleTtl, p.lifeSpan, userId, p.seen, p.past, p.migrations)
  }

  get seen (): boolean {
    return this.profile.seen
  }

  set seen (seen: boolean) {
    const p = this.profile
    if (p.seen !== seen) this.profile = profileOf(p.sandbox, p.idleTtl, p.lifeSpan, p.userId, seen, p.past, p.migrations)
  }

  get past (): readonly PastToken[] {
    return this.profile.past
  }

  set past (past: readonly PastToken[]) {
    const p = this.profile
    if (p.past !== past) this.setFlags(p.seen, past)
  }

  /** Sets `seen` and `past` (and the migration count) with one profile change (rotation.ts run on a copy of the state). */
  setFlags (seen: boolean, past: readonly PastToken[], migrations = this.profile.migrations): void {
    const p = this.profile
    if (p.seen !== seen || p.past !== past || p.migrations !== migrations) {
      this.profile = profileOf(p.sandbox, p.idleTtl, p.lifeSpan, p.userId, seen, past.length === 0 ? NO_PAST : past, migrations)
    }
  }

  /** RotationState.migrations: how many migrations the session has had. */
  get migrations (): number {
    return this.profile.migrations
  }

  set migrations (migrations: number | undefined) {
    this.setFlags(this.profile.seen, this.profile.past, migrations ?? 0)
  }

  /** The rotation state as a plain object, to run rotation.ts on and write back with setRotation. */
  rotationState (): RotationState {
    return { cur: this.cur, seen: this.profile.seen, past: this.profile.past, migrations: this.profile.migrations }
  }

  /** Writes back a rotation state that rotation.ts changed: one profile change and, for a new current key, one repack. */
  setRotation (state: RotationState): void {
    if (!this.isCurrent(state.cur)) this.cur = state.cur
    this.setFlags(state.seen, state.past, state.migrations ?? 0)
  }

  /** The current token's key (a string of its own: rotate keeps it in `past`). */
  get cur (): string {
    return headKey(this.body)
  }

  set cur (key: string) {
    this.body = repacked(this.body, headEnd(this.body), key, null)
  }

  /** Is `key` the current token's key? (No string is made.) */
  isCurrent (key: string): boolean {
    return headIs(this.body, key)
  }

  /** A copy of the data (a key named `__proto__` stays an own key). */
  data (): EncodedData {
    return unpackData(this.body, headEnd(this.body))
  }

  /** The JSON text of data key `key`, or undefined. */
  dataValue (key: string): string | undefined {
    return dataValue(this.body, headEnd(this.body), key)
  }

  /** Sets (string) or deletes (null) data keys. */
  patchData (patch: DataPatch): void {
    this.body = repacked(this.body, headEnd(this.body), undefined, patch)
  }

  /** Replaces all the data. */
  setData (data: EncodedData): void {
    this.body = packed(headKey(this.body), data)
  }
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

/** Sets the times of a session (its offsets), as loaded. */
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
export function snapshot (id: string, session: MemorySession): StoredSession {
  const copy: StoredSession = {
    id,
    sandbox: session.sandbox,
    data: session.data(),
    createdAt: createdOf(session),
    lastSeenAt: lastSeenOf(session),
    idleTtl: session.idleTtl,
    absoluteExpiresAt: absoluteOf(session),
    migrations: session.migrations
  }
  if (session.userId !== undefined) copy.userId = session.userId
  return copy
}

/** A session as listUser answers it; `userId` is its user. */
export function sessionInfo (id: string, session: MemorySession, userId: string): SessionInfo {
  const info: SessionInfo = {
    id,
    sandbox: session.sandbox,
    userId,
    createdAt: createdOf(session),
    lastSeenAt: lastSeenOf(session),
    expiresAt: sessionExpiresAt(session)
  }
  const device = session.dataValue(DEVICE_KEY)
  if (device !== undefined) info.device = device
  return info
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

/** The state of a MemoryStore as its persistence reads and replays it: the maps and the user index. */
export interface MemoryState {
  readonly sessions: ShardedMap<MemorySession>
  readonly values: ShardedMap<TimedValue>
  readonly counters: ShardedMap<Counter>
  indexUser: (userId: string, id: string) => void
  unindexUser: (id: string, session: MemorySession) => void
  /** Drops a session from memory without journaling it. */
  forgetSession: (id: string, session: MemorySession) => void
}
