import { EventEmitter } from 'node:events'
import { openAsTokenHolder, sealForTokenHolder } from './cipher.js'
import { parseDuration, parsePositiveDuration, type Duration } from './duration.js'
import { badOption, isXemsError, XemsError } from './errors.js'
import { decodeData, encodeData, encodeValue } from './session-data.js'
import type { CommitResult, DataPatch, EncodedData, SessionInfo, SessionStore, StoredSession } from './store/contract.js'
import { MemoryStore } from './store/memory-store.js'
import { generateSessionId, generateToken, isWellFormedToken, tokenKey } from './token.js'

/** The absolute cap on any session or stored value: five days, whatever is refreshed. */
export const MAX_AGE_CAP_MS = 5 * 86_400_000
export const DEFAULT_SANDBOX = 'auth-active'
const SANDBOX_NAME = /^[A-Za-z0-9_:-]{1,64}$/
const MAX_KEY_LENGTH = 512

export type ReuseAction = 'revoke' | 'reject'

export interface SandboxOptions {
  /** Idle lifetime of sessions and default lifetime of values in this sandbox. */
  ttl?: Duration
}

export interface EngineOptions {
  store?: SessionStore
  /** The default sandbox (default `auth-active`). */
  sandbox?: string
  /** Idle lifetime of the default sandbox, refreshed by use (default `1h`). */
  ttl?: Duration
  /** Absolute cap from creation, never extended (default and maximum `5d`). */
  maxAge?: Duration
  /** How long a rotated token keeps resolving its session (default `2s`). */
  gracePeriod?: Duration
  /** What a rotated token replayed after its grace does: `revoke` the session (default) or only `reject` itself. */
  onReuse?: ReuseAction
  /** Per-sandbox settings; sandboxes not named here use `ttl`. */
  sandboxes?: Record<string, SandboxOptions>
  /** Milliseconds since the epoch (default Date.now); for tests. */
  clock?: () => number
}

/** A session as `resolveSession` returns it. */
export interface ResolvedSession {
  id: string
  sandbox: string
  data: Record<string, unknown>
  userId?: string
  createdAt: number
  lastSeenAt: number
  expiresAt: number
  /** The token to use from now on (a new one when the call rotated). */
  token: string
}

export interface CreateSessionOptions {
  ttl?: Duration
  userId?: string
}

export interface ResolveSessionOptions {
  /** Only a session of this sandbox resolves (default: the default sandbox). */
  sandbox?: string
  /** Issue a new token and put the presented one in grace (default false). */
  rotate?: boolean
  /** Grace for the presented token when rotating (default: the engine's). */
  gracePeriod?: Duration
}

export interface MigrateOptions {
  from: string
  to: string
  /** Replaces the session data when given; otherwise it is kept. */
  data?: Record<string, unknown>
  /** Idle lifetime in the new sandbox (default: that sandbox's ttl). */
  ttl?: Duration
  userId?: string
}

export interface XemsEvents {
  created: [{ sid: string, sandbox: string, userId?: string }]
  rotated: [{ sid: string, sandbox: string }]
  migrated: [{ sid: string, from: string, to: string }]
  destroyed: [{ sid: string, sandbox: string }]
  reuse: [{ sid: string, sandbox: string, userId?: string, revoked: boolean }]
  revoked: [{ userId: string, count: number }]
}

/** What a token opened to. `token` is the token the client must use from now on, when known. */
export type Opened =
  | { status: 'none' }
  | { status: 'reused', sid: string, sandbox: string, userId?: string, revoked: boolean }
  | { status: 'live' | 'grace', session: StoredSession, presentedKey: string, token: string | null }

/** Values in one sandbox: `app.xems.from('users-registry').set(key, value, ttl?)`. */
export interface SandboxValues {
  readonly sandbox: string
  set: (key: string, value: unknown, ttl?: Duration) => Promise<void>
  get: <T = unknown>(key: string) => Promise<T | null>
  del: (key: string) => Promise<boolean>
  /** Sets only when the key holds nothing; true when it was set (atomic: one winner among parallel callers). */
  add: (key: string, value: unknown, ttl?: Duration) => Promise<boolean>
  /** Reads and deletes in one atomic step: of parallel callers exactly one gets the value. */
  take: <T = unknown>(key: string) => Promise<T | null>
}

/**
 * The session engine: creates, resolves, rotates, migrates and destroys sessions on a store.
 * Framework-free; the Fastify plugin translates HTTP to these calls.
 */
export class XemsEngine extends EventEmitter<XemsEvents> {
  readonly store: SessionStore
  readonly defaultSandbox: string
  readonly maxAge: number
  readonly gracePeriod: number
  readonly onReuse: ReuseAction
  readonly now: () => number
  readonly #ttls = new Map<string, number>()
  readonly #defaultTtl: number

  constructor (options: EngineOptions = {}) {
    super()
    this.defaultSandbox = checkSandbox(options.sandbox ?? DEFAULT_SANDBOX, 'sandbox')
    this.maxAge = parsePositiveDuration(options.maxAge ?? MAX_AGE_CAP_MS, 'maxAge')
    if (this.maxAge > MAX_AGE_CAP_MS) throw badOption('maxAge', 'must be at most 5 days (5d): no session lives longer')
    this.#defaultTtl = this.#checkTtl(options.ttl ?? '1h', 'ttl')
    this.gracePeriod = parseDuration(options.gracePeriod ?? '2s', 'gracePeriod')
    if (this.gracePeriod > 60_000) throw badOption('gracePeriod', 'must be at most 1 minute: grace is for concurrent requests, not for keeping old tokens alive')
    const onReuse = options.onReuse ?? 'revoke'
    if (onReuse !== 'revoke' && onReuse !== 'reject') throw badOption('onReuse', `must be 'revoke' or 'reject'`)
    this.onReuse = onReuse
    if (options.clock !== undefined && typeof options.clock !== 'function') throw badOption('clock', 'must be a function returning milliseconds')
    this.now = options.clock ?? Date.now
    if (options.sandboxes !== undefined) {
      if (options.sandboxes === null || typeof options.sandboxes !== 'object') throw badOption('sandboxes', 'must be an object of sandbox name → { ttl }')
      for (const [name, settings] of Object.entries(options.sandboxes)) {
        checkSandbox(name, `sandboxes.${name}`)
        if (settings?.ttl !== undefined) this.#ttls.set(name, this.#checkTtl(settings.ttl, `sandboxes.${name}.ttl`))
      }
    }
    this.store = options.store ?? new MemoryStore({ clock: this.now })
    checkStore(this.store)
  }

  /** The idle lifetime of a sandbox. */
  ttlOf (sandbox: string): number {
    return this.#ttls.get(sandbox) ?? this.#defaultTtl
  }

  from (sandbox: string): SandboxValues {
    checkSandbox(sandbox, 'sandbox')
    const lifetime = (ttl: Duration | undefined): number => ttl === undefined ? this.ttlOf(sandbox) : this.#checkTtl(ttl, 'ttl')
    return {
      sandbox,
      set: async (key, value, ttl) => {
        const text = encodeStored(value, checkKey(key))
        await this.#call(async () => await this.store.kvSet(sandbox, key, text, lifetime(ttl), this.now()))
      },
      get: async <T>(key: string) => {
        const text = await this.#call(async () => await this.store.kvGet(sandbox, checkKey(key), this.now()))
        return text === null ? null : JSON.parse(text) as T
      },
      del: async (key) => await this.#call(async () => await this.store.kvDel(sandbox, checkKey(key))),
      add: async (key, value, ttl) => {
        const text = encodeStored(value, checkKey(key))
        return await this.#call(async () => await this.store.kvAdd(sandbox, key, text, lifetime(ttl), this.now()))
      },
      take: async <T>(key: string) => {
        const text = await this.#call(async () => await this.store.kvTake(sandbox, checkKey(key), this.now()))
        return text === null ? null : JSON.parse(text) as T
      }
    }
  }

  /** Opens a new session and returns its token. */
  async createSession (sandbox: string, data: Record<string, unknown> = {}, options: CreateSessionOptions = {}): Promise<string> {
    return (await this.issue(sandbox, data, options)).token
  }

  /** Opens a new session; returns its token and the session as stored. */
  async issue (sandbox: string, data: Record<string, unknown> = {}, options: CreateSessionOptions = {}): Promise<{ token: string, session: StoredSession }> {
    checkSandbox(sandbox, 'sandbox')
    const encoded = encodeData(data)
    const idleTtl = options.ttl === undefined ? this.ttlOf(sandbox) : this.#checkTtl(options.ttl, 'ttl')
    const userId = checkUserId(options.userId)
    const token = generateToken()
    const now = this.now()
    const session: StoredSession = {
      sid: generateSessionId(), sandbox, data: encoded, createdAt: now, lastSeenAt: now, idleTtl, absoluteExpiresAt: now + this.maxAge
    }
    if (userId !== undefined) session.userId = userId
    await this.#call(async () => await this.store.create({
      sid: session.sid, sandbox, tokenKey: tokenKey(token), data: encoded, now, idleTtl, absoluteExpiresAt: session.absoluteExpiresAt, ...(userId === undefined ? {} : { userId })
    }))
    this.emit('created', { sid: session.sid, sandbox, ...(userId === undefined ? {} : { userId }) })
    return { token, session }
  }

  /**
   * Resolves a token presented by a client. Junk never reaches the store. A rotated token within its
   * grace resolves, with `token` the session's current one; after its grace it is a theft signal.
   */
  async open (token: unknown, sandbox?: string): Promise<Opened> {
    if (!isWellFormedToken(token)) return { status: 'none' }
    const presentedKey = tokenKey(token)
    const result = await this.#call(async () => await this.store.resolve({
      tokenKey: presentedKey, now: this.now(), revokeOnReuse: this.onReuse === 'revoke', ...(sandbox === undefined ? {} : { sandbox })
    }))
    switch (result.status) {
      case 'none':
        return result
      case 'reused':
        this.emit('reuse', { sid: result.sid, sandbox: result.sandbox, revoked: result.revoked, ...(result.userId === undefined ? {} : { userId: result.userId }) })
        return { status: 'reused', sid: result.sid, sandbox: result.sandbox, revoked: result.revoked, ...(result.userId === undefined ? {} : { userId: result.userId }) }
      case 'live':
        return { status: 'live', session: result.session, presentedKey, token }
      case 'grace':
        return { status: 'grace', session: result.session, presentedKey, token: followChain(token, result.chain) }
    }
  }

  /**
   * Saves a request's changes and, when asked, rotates its token, in one store step. Returns the token
   * the client must use from now on (null when unknown), or `gone` when the session ended meanwhile.
   */
  async commit (session: { sid: string, sandbox: string, presentedKey: string, presentedToken: string }, patch: DataPatch | null, rotate: { gracePeriod: number } | null): Promise<{ status: 'gone' } | { status: 'ok', token: string | null, expiresAt: number }> {
    const now = this.now()
    let newToken: string | null = null
    let result: CommitResult
    if (rotate !== null) {
      newToken = generateToken()
      const box = sealForTokenHolder(session.presentedToken, newToken)
      const graceUntil = now + rotate.gracePeriod
      const newKey = tokenKey(newToken)
      result = await this.#call(async () => await this.store.commit({ sid: session.sid, tokenKey: session.presentedKey, patch, rotate: { newKey, box, graceUntil }, now }))
    } else {
      result = await this.#call(async () => await this.store.commit({ sid: session.sid, tokenKey: session.presentedKey, patch, rotate: null, now }))
    }
    if (result.status === 'gone') return result
    if (result.rotated) {
      this.emit('rotated', { sid: session.sid, sandbox: session.sandbox })
      return { status: 'ok', token: newToken, expiresAt: result.expiresAt }
    }
    const token = result.chain === null ? null : followChain(session.presentedToken, result.chain)
    return { status: 'ok', token, expiresAt: result.expiresAt }
  }

  /** Moves a session to another sandbox (or the same one, for a plain regenerate): every old token dies. */
  async migrateById (sid: string, options: MigrateOptions): Promise<string | null> {
    checkSandbox(options.from, 'from')
    checkSandbox(options.to, 'to')
    const data = options.data === undefined ? null : encodeData(options.data)
    const idleTtl = options.ttl === undefined ? this.ttlOf(options.to) : this.#checkTtl(options.ttl, 'ttl')
    const userId = checkUserId(options.userId)
    const token = generateToken()
    const moved = await this.#call(async () => await this.store.migrate({
      sid, from: options.from, to: options.to, newKey: tokenKey(token), data, idleTtl, now: this.now(), ...(userId === undefined ? {} : { userId })
    }))
    if (!moved) return null
    this.emit('migrated', { sid, from: options.from, to: options.to })
    return token
  }

  async destroyById (sid: string, sandbox: string): Promise<boolean> {
    const destroyed = await this.#call(async () => await this.store.destroy(sid))
    if (destroyed) this.emit('destroyed', { sid, sandbox })
    return destroyed
  }

  /** Resolves a token for a caller outside the request cycle (a WebSocket upgrade, a job). */
  async resolveSession (token: unknown, options: ResolveSessionOptions = {}): Promise<ResolvedSession | null> {
    const sandbox = checkSandbox(options.sandbox ?? this.defaultSandbox, 'sandbox')
    const grace = options.gracePeriod === undefined ? this.gracePeriod : parseDuration(options.gracePeriod, 'gracePeriod')
    const opened = await this.open(token, sandbox)
    if (opened.status !== 'live' && opened.status !== 'grace') return null
    const { session } = opened
    let current = opened.token
    let expiresAt = Math.min(session.lastSeenAt + session.idleTtl, session.absoluteExpiresAt)
    if (options.rotate === true && opened.status === 'live') {
      const committed = await this.commit({ sid: session.sid, sandbox, presentedKey: opened.presentedKey, presentedToken: token as string }, null, { gracePeriod: grace })
      if (committed.status === 'gone') return null
      current = committed.token
      expiresAt = committed.expiresAt
    }
    if (current === null) return null
    const resolved: ResolvedSession = {
      id: session.sid,
      sandbox: session.sandbox,
      data: decodeData(session.data),
      createdAt: session.createdAt,
      lastSeenAt: session.lastSeenAt,
      expiresAt,
      token: current
    }
    if (session.userId !== undefined) resolved.userId = session.userId
    return resolved
  }

  /** Moves the session of `token` from one sandbox to another; returns its new token, or null. */
  async migrate (token: unknown, options: MigrateOptions): Promise<string | null> {
    checkSandbox(options.from, 'from')
    const opened = await this.open(token, options.from)
    if (opened.status !== 'live' && opened.status !== 'grace') return null
    return await this.migrateById(opened.session.sid, options)
  }

  /** Ends the session of `token`, in whichever sandbox it is. */
  async destroySession (token: unknown): Promise<boolean> {
    const opened = await this.open(token)
    if (opened.status !== 'live' && opened.status !== 'grace') return false
    return await this.destroyById(opened.session.sid, opened.session.sandbox)
  }

  /** Counts a hit on `key` in a fixed window (rate limits, attempt counters); store failures are 503s. */
  async hit (key: string, window: number): Promise<{ count: number, resetAt: number }> {
    return await this.#call(async () => await this.store.increment(key, window, this.now()))
  }

  async resetCounter (key: string): Promise<void> {
    await this.#call(async () => { await this.store.resetCounter(key) })
  }

  /** Ends every session of a user ("log out everywhere"), optionally but one (the current). */
  async revokeUser (userId: string, options: { except?: string } = {}): Promise<number> {
    checkUserId(userId)
    const count = await this.#call(async () => await this.store.revokeUser(userId, this.now(), options.except))
    this.emit('revoked', { userId, count })
    return count
  }

  async listUserSessions (userId: string): Promise<SessionInfo[]> {
    checkUserId(userId)
    return await this.#call(async () => await this.store.listUser(userId, this.now()))
  }

  async close (): Promise<void> {
    await this.store.close()
  }

  #checkTtl (value: Duration, option: string): number {
    const ms = parsePositiveDuration(value, option)
    if (ms > this.maxAge) throw badOption(option, `must not exceed maxAge (${this.maxAge} ms): nothing lives longer than the absolute cap`)
    return ms
  }

  /** Store failures become 503 errors with a stable code; our own errors pass through. */
  async #call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation()
    } catch (err) {
      if (isXemsError(err)) throw err
      throw new XemsError('FST_XEMS_STORE_UNAVAILABLE', 'fastify-xems: the session store is unavailable', 503, { cause: err })
    }
  }
}

/** Opens the grace boxes one after another, from the presented token to the current one. */
function followChain (token: string, chain: string[]): string | null {
  let current: string | null = token
  for (const box of chain) {
    current = openAsTokenHolder(current, box)
    if (current === null) return null
  }
  return current
}

export function checkSandbox (name: unknown, option: string): string {
  if (typeof name !== 'string' || !SANDBOX_NAME.test(name)) {
    throw new XemsError('FST_XEMS_BAD_SANDBOX', `fastify-xems: option "${option}" must be a sandbox name of 1 to 64 characters from [A-Za-z0-9_:-]`)
  }
  return name
}

function checkKey (key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new XemsError('FST_XEMS_BAD_VALUE', `fastify-xems: a key must be a string of 1 to ${MAX_KEY_LENGTH} characters`, 500)
  }
  return key
}

function checkUserId (userId: unknown): string | undefined {
  if (userId === undefined) return undefined
  if (typeof userId !== 'string' || userId.length === 0 || userId.length > MAX_KEY_LENGTH) {
    throw new XemsError('FST_XEMS_BAD_VALUE', `fastify-xems: userId must be a string of 1 to ${MAX_KEY_LENGTH} characters`, 500)
  }
  return userId
}

function encodeStored (value: unknown, key: string): string {
  const text = encodeValue(value, `value of "${key}"`)
  if (text === undefined) throw new XemsError('FST_XEMS_BAD_VALUE', `fastify-xems: value of "${key}" cannot be undefined or a function`, 500)
  return text
}

const STORE_METHODS = ['create', 'resolve', 'commit', 'migrate', 'destroy', 'revokeUser', 'listUser', 'kvGet', 'kvSet', 'kvDel', 'kvAdd', 'kvTake', 'increment', 'resetCounter', 'close'] as const

function checkStore (store: unknown): void {
  const missing = STORE_METHODS.filter((method) => typeof (store as Record<string, unknown> | null)?.[method] !== 'function')
  if (missing.length > 0) throw badOption('store', `must implement the SessionStore contract; missing: ${missing.join(', ')}`)
}

export type { EncodedData }
