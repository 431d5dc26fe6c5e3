import { parsePositiveDuration, type Duration } from '../duration.js'
import { XemsError } from '../errors.js'
import {
  ROTATED_TOKENS_KEPT,
  type CommitInput, type CommitResult, type CounterResult, type CreateInput, type MigrateInput,
  type ResolveInput, type ResolveResult, type SessionInfo, type SessionStore, type StoredSession
} from './contract.js'
import { IncrementalSweeper } from './sweeper.js'

export interface MemoryStoreOptions {
  /** How often expired entries are swept, in small steps (default 250ms). */
  sweepInterval?: Duration
  /** The clock the background sweep reads (default Date.now); give the engine's clock in tests. */
  clock?: () => number
}

interface MemorySession extends StoredSession {
  currentKey: string
  /** Keys of rotated tokens, oldest first, at most ROTATED_TOKENS_KEPT. */
  rotatedKeys: string[]
}

interface TokenEntry {
  sid: string
  /** Set once the token has been rotated away. */
  next: { key: string, box: string, graceUntil: number } | null
}

interface TimedValue {
  value: string
  expiresAt: number
}

interface Counter {
  count: number
  resetAt: number
}

const NONE: ResolveResult = Object.freeze({ status: 'none' })

function sessionExpiresAt (session: StoredSession): number {
  return Math.min(session.lastSeenAt + session.idleTtl, session.absoluteExpiresAt)
}

/**
 * The embedded store: everything lives in this process's memory. Each operation runs as one
 * synchronous section, so it is atomic with respect to every other request of the process.
 */
export class MemoryStore implements SessionStore {
  readonly #sessions = new Map<string, MemorySession>()
  readonly #tokens = new Map<string, TokenEntry>()
  readonly #values = new Map<string, TimedValue>()
  readonly #counters = new Map<string, Counter>()
  readonly #users = new Map<string, Set<string>>()
  readonly #sweeper: IncrementalSweeper
  #timer: NodeJS.Timeout | null
  #closed = false

  constructor (options: MemoryStoreOptions = {}) {
    const interval = parsePositiveDuration(options.sweepInterval ?? 250, 'sweepInterval')
    this.#sweeper = new IncrementalSweeper([
      { map: this.#sessions, isExpired: (s: MemorySession, now) => sessionExpiresAt(s) <= now, remove: (_k, s: MemorySession) => this.#removeSession(s) },
      { map: this.#values, isExpired: (v: TimedValue, now) => v.expiresAt <= now, remove: (k) => this.#values.delete(k) },
      { map: this.#counters, isExpired: (c: Counter, now) => c.resetAt <= now, remove: (k) => this.#counters.delete(k) }
    ])
    const clock = options.clock ?? Date.now
    this.#timer = setInterval(() => this.sweep(clock()), interval)
    this.#timer.unref()
  }

  /** Number of live entries (sessions, token keys, values, counters), for monitoring and tests. */
  get size (): { sessions: number, tokens: number, values: number, counters: number } {
    return { sessions: this.#sessions.size, tokens: this.#tokens.size, values: this.#values.size, counters: this.#counters.size }
  }

  /** One bounded sweep step (about 2 ms at most); the store runs it on its own timer. */
  sweep (now: number): number {
    return this.#closed ? 0 : this.#sweeper.step(now)
  }

  async create (input: CreateInput): Promise<void> {
    this.#assertOpen()
    const session: MemorySession = {
      sid: input.sid,
      sandbox: input.sandbox,
      data: { ...input.data },
      createdAt: input.now,
      lastSeenAt: input.now,
      idleTtl: input.idleTtl,
      absoluteExpiresAt: input.absoluteExpiresAt,
      currentKey: input.tokenKey,
      rotatedKeys: []
    }
    if (input.userId !== undefined) {
      session.userId = input.userId
      this.#indexUser(input.userId, input.sid)
    }
    this.#sessions.set(input.sid, session)
    this.#tokens.set(input.tokenKey, { sid: input.sid, next: null })
  }

  async resolve (input: ResolveInput): Promise<ResolveResult> {
    this.#assertOpen()
    const entry = this.#tokens.get(input.tokenKey)
    if (entry === undefined) return NONE
    const session = this.#liveSession(entry.sid, input.now)
    if (session === null) return NONE
    if (entry.next !== null && entry.next.graceUntil <= input.now) {
      if (input.revokeOnReuse) this.#removeSession(session)
      const reused: ResolveResult = { status: 'reused', sid: session.sid, sandbox: session.sandbox, revoked: input.revokeOnReuse }
      if (session.userId !== undefined) reused.userId = session.userId
      return reused
    }
    if (input.sandbox !== undefined && session.sandbox !== input.sandbox) return NONE
    session.lastSeenAt = input.now
    if (entry.next === null) return { status: 'live', session: snapshot(session) }
    return { status: 'grace', session: snapshot(session), chain: this.#chainFrom(input.tokenKey) ?? [] }
  }

  async commit (input: CommitInput): Promise<CommitResult> {
    this.#assertOpen()
    const session = this.#liveSession(input.sid, input.now)
    if (session === null) return { status: 'gone' }
    if (input.patch !== null) {
      for (const [key, value] of Object.entries(input.patch)) {
        if (value === null) delete session.data[key]
        else session.data[key] = value
      }
    }
    session.lastSeenAt = input.now
    if (input.rotate !== null && session.currentKey === input.tokenKey) {
      const old = this.#tokens.get(input.tokenKey)!
      old.next = { key: input.rotate.newKey, box: input.rotate.box, graceUntil: input.rotate.graceUntil }
      this.#tokens.set(input.rotate.newKey, { sid: session.sid, next: null })
      session.currentKey = input.rotate.newKey
      session.rotatedKeys.push(input.tokenKey)
      if (session.rotatedKeys.length > ROTATED_TOKENS_KEPT) this.#tokens.delete(session.rotatedKeys.shift()!)
      return { status: 'ok', rotated: true, expiresAt: sessionExpiresAt(session) }
    }
    const chain = session.currentKey === input.tokenKey ? [] : this.#chainFrom(input.tokenKey)
    return { status: 'ok', rotated: false, chain, expiresAt: sessionExpiresAt(session) }
  }

  async migrate (input: MigrateInput): Promise<boolean> {
    this.#assertOpen()
    const session = this.#liveSession(input.sid, input.now)
    if (session === null || session.sandbox !== input.from) return false
    this.#dropTokens(session)
    session.sandbox = input.to
    session.idleTtl = input.idleTtl
    session.lastSeenAt = input.now
    if (input.data !== null) session.data = { ...input.data }
    if (input.userId !== undefined && input.userId !== session.userId) {
      this.#unindexUser(session)
      session.userId = input.userId
      this.#indexUser(input.userId, session.sid)
    }
    session.currentKey = input.newKey
    this.#tokens.set(input.newKey, { sid: session.sid, next: null })
    return true
  }

  async destroy (sid: string): Promise<boolean> {
    this.#assertOpen()
    const session = this.#sessions.get(sid)
    if (session === undefined) return false
    this.#removeSession(session)
    return true
  }

  async revokeUser (userId: string, now: number, exceptSid?: string): Promise<number> {
    this.#assertOpen()
    let ended = 0
    for (const sid of [...(this.#users.get(userId) ?? [])]) {
      if (sid === exceptSid) continue
      const session = this.#sessions.get(sid)!
      if (sessionExpiresAt(session) > now) ended++
      this.#removeSession(session)
    }
    return ended
  }

  async listUser (userId: string, now: number): Promise<SessionInfo[]> {
    this.#assertOpen()
    const infos: SessionInfo[] = []
    for (const sid of [...(this.#users.get(userId) ?? [])]) {
      const session = this.#liveSession(sid, now)
      if (session === null) continue
      infos.push({
        sid,
        sandbox: session.sandbox,
        userId,
        createdAt: session.createdAt,
        lastSeenAt: session.lastSeenAt,
        expiresAt: sessionExpiresAt(session)
      })
    }
    return infos
  }

  async kvGet (sandbox: string, key: string, now: number): Promise<string | null> {
    this.#assertOpen()
    return this.#liveValue(valueKey(sandbox, key), now)?.value ?? null
  }

  async kvSet (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<void> {
    this.#assertOpen()
    this.#values.set(valueKey(sandbox, key), { value, expiresAt: now + ttl })
  }

  async kvDel (sandbox: string, key: string): Promise<boolean> {
    this.#assertOpen()
    return this.#values.delete(valueKey(sandbox, key))
  }

  async kvAdd (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<boolean> {
    this.#assertOpen()
    const k = valueKey(sandbox, key)
    if (this.#liveValue(k, now) !== null) return false
    this.#values.set(k, { value, expiresAt: now + ttl })
    return true
  }

  async kvTake (sandbox: string, key: string, now: number): Promise<string | null> {
    this.#assertOpen()
    const k = valueKey(sandbox, key)
    const entry = this.#liveValue(k, now)
    if (entry === null) return null
    this.#values.delete(k)
    return entry.value
  }

  async increment (key: string, window: number, now: number): Promise<CounterResult> {
    this.#assertOpen()
    let counter = this.#counters.get(key)
    if (counter === undefined || counter.resetAt <= now) {
      counter = { count: 0, resetAt: now + window }
      this.#counters.set(key, counter)
    }
    counter.count++
    return { count: counter.count, resetAt: counter.resetAt }
  }

  async resetCounter (key: string): Promise<void> {
    this.#assertOpen()
    this.#counters.delete(key)
  }

  async close (): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    this.#closed = true
  }

  #assertOpen (): void {
    if (this.#closed) throw new XemsError('FST_XEMS_STORE_CLOSED', 'fastify-xems: the store has been closed', 503)
  }

  #liveSession (sid: string, now: number): MemorySession | null {
    const session = this.#sessions.get(sid)
    if (session === undefined) return null
    if (sessionExpiresAt(session) <= now) {
      this.#removeSession(session)
      return null
    }
    return session
  }

  #liveValue (key: string, now: number): TimedValue | null {
    const entry = this.#values.get(key)
    if (entry === undefined) return null
    if (entry.expiresAt <= now) {
      this.#values.delete(key)
      return null
    }
    return entry
  }

  /** Grace boxes from `key` to the session's current token; null when a link was forgotten. */
  #chainFrom (key: string): string[] | null {
    const chain: string[] = []
    let entry = this.#tokens.get(key)
    while (entry !== undefined && entry.next !== null) {
      if (chain.length > ROTATED_TOKENS_KEPT) return null
      chain.push(entry.next.box)
      entry = this.#tokens.get(entry.next.key)
    }
    return entry === undefined ? null : chain
  }

  #dropTokens (session: MemorySession): void {
    this.#tokens.delete(session.currentKey)
    for (const key of session.rotatedKeys) this.#tokens.delete(key)
    session.rotatedKeys = []
  }

  #removeSession (session: MemorySession): void {
    this.#dropTokens(session)
    this.#sessions.delete(session.sid)
    this.#unindexUser(session)
  }

  #indexUser (userId: string, sid: string): void {
    let sids = this.#users.get(userId)
    if (sids === undefined) this.#users.set(userId, sids = new Set())
    sids.add(sid)
  }

  #unindexUser (session: MemorySession): void {
    if (session.userId === undefined) return
    const sids = this.#users.get(session.userId)
    if (sids === undefined) return
    sids.delete(session.sid)
    if (sids.size === 0) this.#users.delete(session.userId)
  }
}

function valueKey (sandbox: string, key: string): string {
  return `${sandbox}\u0000${key}`
}

function snapshot (session: MemorySession): StoredSession {
  const copy: StoredSession = {
    sid: session.sid,
    sandbox: session.sandbox,
    data: { ...session.data },
    createdAt: session.createdAt,
    lastSeenAt: session.lastSeenAt,
    idleTtl: session.idleTtl,
    absoluteExpiresAt: session.absoluteExpiresAt
  }
  if (session.userId !== undefined) copy.userId = session.userId
  return copy
}
