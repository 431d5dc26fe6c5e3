import { EventEmitter } from 'node:events'
import { openAsTokenHolder, sealForTokenHolder } from '../crypto/cipher.js'
import { parseDuration, parsePositiveDuration, type Duration } from '../duration.js'
import { decodeDevice, encodeDevice, type DeviceInfo } from '../device.js'
import { badOption, isXemsError, xemsError, type XemsError } from '../errors.js'
import { sameKindOfDevice, type SecurityEvent } from '../security-events.js'
import { decodeBinding, encodeBinding, type SessionBinding, type UnreadableBinding } from '../binding/binding.js'
import { decodeData, encodeData, encodeValue, assertNoReservedKey } from './data.js'
import {
  generateLocator, parseSessionToken, publicIdOf, recordIdOf, secretKeyOf, sessionTokenOf, type ParsedToken
} from './token.js'
import {
  BINDING_KEY, DEVICE_KEY, type CommitResult, type DataPatch, type EncodedData, type LimitResult, type ResolveInput,
  type ResolveResult, type RotateInput, type SessionInfo, type SessionStore, type StoredSession, type UserLimit
} from '../store/contract.js'
import { MemoryStore } from '../store/memory/memory-store.js'
import { generateToken } from '../crypto/random-token.js'

/** The absolute cap on any session or stored value: five days, whatever is refreshed. */
export const MAX_AGE_CAP_MS = 5 * 86_400_000
export const DEFAULT_SANDBOX = 'auth-active'
const SANDBOX_NAME = /^[A-Za-z0-9_:-]{1,64}$/
const MAX_KEY_LENGTH = 512

export type ReuseAction = 'revoke' | 'reject'

export interface SandboxOptions {
  /** Idle lifetime of sessions and default lifetime of values in this sandbox. */
  ttl?: Duration | undefined
}

export interface EngineOptions {
  store?: SessionStore | undefined
  /** The default sandbox (default `auth-active`). */
  sandbox?: string | undefined
  /** Idle lifetime of the default sandbox, refreshed by use (default `1h`). */
  ttl?: Duration | undefined
  /** Absolute cap from creation, never extended (default and maximum `5d`). */
  maxAge?: Duration | undefined
  /**
   * How long a rotated token keeps working once its successor has been presented: requests that were
   * already in flight, or waiting in the browser's own queues (default `10s`, at most 1 minute).
   */
  gracePeriod?: Duration | undefined
  /**
   * How long a rotated token keeps working while its successor has not been presented yet: a lost
   * response, a backlog, a commit whose answer never arrived, a browser that serialises requests. It is
   * answered with the current token. Default `10m`; at least gracePeriod, at most maxAge.
   */
  unseenWindow?: Duration | undefined
  /** What an earlier token replayed after its window does: `revoke` the session (default) or only `reject` itself. */
  onReuse?: ReuseAction | undefined
  /** Per-sandbox settings; sandboxes not named here use `ttl`. */
  sandboxes?: Record<string, SandboxOptions> | undefined
  /** Milliseconds since the epoch (default Date.now); for tests. */
  clock?: (() => number) | undefined
  /** Receives every security event (the same as `app.xems.on('security', fn)`); see lib/security-events.ts. */
  onSecurityEvent?: ((event: SecurityEvent) => void) | undefined
  /** A cap on the live sessions of one user (default: none); see MaxSessionsPerUser. */
  maxSessionsPerUser?: MaxSessionsPerUser | undefined
}

/**
 * At most `limit` live sessions per user, counted and decided in one atomic store step whenever a
 * session gains a user (created with one, or migrated to one: a sign-in). Every live session of the
 * user counts, in any sandbox.
 */
export interface MaxSessionsPerUser {
  /** 1 to 1000. */
  limit: number
  /**
   * `'end-oldest'`: the sign-in succeeds and the user's least recently created sessions end (their
   * tokens answer 401 FST_XEMS_NO_SESSION, not the theft signal), with a `session-limit-ended` security
   * event each. `'refuse'`: the sign-in fails with 409 FST_XEMS_SESSION_LIMIT and nothing is created.
   */
  onLimit: 'end-oldest' | 'refuse'
}

/** A session as `resolveSession` returns it. */
export interface ResolvedSession {
  /** The public id: names the session in logs and lists, opens nothing. */
  id: string
  sandbox: string
  data: Record<string, unknown>
  userId?: string | undefined
  createdAt: number
  lastSeenAt: number
  expiresAt: number
  /** The token to use from now on (a new one when the call rotated). */
  token: string
  /** The key the session is bound to (only with `allowBound`), or null. */
  binding: SessionBinding | UnreadableBinding | null
}

/** A session of a user, as `listUserSessions` returns it: `id` is the public id. */
export interface UserSessionInfo extends Omit<SessionInfo, 'device'> {
  /** What the session recorded of its device (null for sessions opened without one, e.g. by createSession). */
  device: DeviceInfo | null
  /** True for the session of the request given as `current`. */
  current: boolean
}

export interface ListUserSessionsOptions {
  /** The request (or anything with `session.id`, or a public id) whose session gets `current: true`. */
  current?: { session?: { id: string } | null } | string | null
}

export interface CreateSessionOptions {
  ttl?: Duration | undefined
  userId?: string | undefined
  /** The device record kept with the session (the plugin fills it from the request). */
  device?: DeviceInfo | undefined
  /** The key the session is bound to from its first response (a DPoP login). */
  binding?: SessionBinding | undefined
}

export interface ResolveSessionOptions {
  /** Only a session of this sandbox resolves (default: the default sandbox). */
  sandbox?: string | undefined
  /** Issue a new token (default false); the presented one keeps working until the new one is used. */
  rotate?: boolean | undefined
  /** Grace the previous token gets when this call presents its successor for the first time (default: the engine's). */
  gracePeriod?: Duration | undefined
  /**
   * Resolve sessions bound to a key (DBSC, DPoP) too (default false: a bound session is null here, since
   * a token alone is not that session). Set it only when the caller checks the possession of the key itself.
   */
  allowBound?: boolean | undefined
}

export interface MigrateOptions {
  from: string
  to: string
  /** Replaces the session data when given; otherwise it is kept. */
  data?: Record<string, unknown> | undefined
  /** Idle lifetime in the new sandbox (default: that sandbox's ttl). */
  ttl?: Duration | undefined
  userId?: string | undefined
  /** With `data`: the device record to keep (data replaces everything, the device record included). */
  device?: DeviceInfo | null | undefined
  /** With `data`: the key binding to keep (a session stays bound to its key through migrations). */
  binding?: SessionBinding | null | undefined
}

/** Every event names sessions by their public id. */
export interface XemsEvents {
  created: [{ id: string, sandbox: string, userId?: string | undefined }]
  rotated: [{ id: string, sandbox: string }]
  migrated: [{ id: string, from: string, to: string }]
  destroyed: [{ id: string, sandbox: string }]
  reuse: [{ id: string, sandbox: string, userId?: string | undefined, revoked: boolean }]
  revoked: [{ userId: string, count: number }]
  /** The security event stream (lib/security-events.ts): no token, code or secret in any of them. */
  security: [SecurityEvent]
}

/** The token a request presented, as the engine needs it to rotate or migrate its session. */
export interface PresentedToken extends ParsedToken {
  /** The store's key of the token. */
  key: string
}

/** What a token opened to. `token` is the token the client must use from now on, when known. */
export type Opened =
  | { status: 'none' }
  | { status: 'reused', id: string, sandbox: string, userId?: string | undefined, revoked: boolean, device: DeviceInfo | null }
  | { status: 'live' | 'grace', session: StoredSession, presented: PresentedToken, token: string | null }

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
  readonly unseenWindow: number
  readonly onReuse: ReuseAction
  readonly now: () => number
  /** The cap of maxSessionsPerUser, as the store applies it; null when off. */
  readonly userLimit: UserLimit | null
  readonly #ttls = new Map<string, number>()
  readonly #defaultTtl: number

  constructor (options: EngineOptions = {}) {
    super()
    this.defaultSandbox = checkSandbox(options.sandbox ?? DEFAULT_SANDBOX, 'sandbox')
    this.maxAge = parsePositiveDuration(options.maxAge ?? MAX_AGE_CAP_MS, 'maxAge')
    if (this.maxAge > MAX_AGE_CAP_MS) throw badOption('maxAge', 'must be at most 5 days (5d): no session lives longer')
    this.#defaultTtl = this.#checkTtl(options.ttl ?? '1h', 'ttl')
    this.gracePeriod = checkGrace(options.gracePeriod ?? '10s', 'gracePeriod')
    this.unseenWindow = parsePositiveDuration(options.unseenWindow ?? '10m', 'unseenWindow')
    if (this.unseenWindow < this.gracePeriod) throw badOption('unseenWindow', `must be at least gracePeriod (${this.gracePeriod} ms)`)
    if (this.unseenWindow > this.maxAge) throw badOption('unseenWindow', `must not exceed maxAge (${this.maxAge} ms)`)
    const onReuse = options.onReuse ?? 'revoke'
    if (onReuse !== 'revoke' && onReuse !== 'reject') throw badOption('onReuse', 'must be \'revoke\' or \'reject\'')
    this.onReuse = onReuse
    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw badOption('clock', 'must be a function returning milliseconds')
    }
    this.now = options.clock ?? Date.now
    if (options.sandboxes !== undefined) {
      if (options.sandboxes === null || typeof options.sandboxes !== 'object') {
        throw badOption('sandboxes', 'must be an object of sandbox name → { ttl }')
      }
      for (const [name, settings] of Object.entries(options.sandboxes)) {
        checkSandbox(name, `sandboxes.${name}`)
        if (settings?.ttl !== undefined) this.#ttls.set(name, this.#checkTtl(settings.ttl, `sandboxes.${name}.ttl`))
      }
    }
    this.userLimit = checkUserLimit(options.maxSessionsPerUser)
    this.store = options.store ?? new MemoryStore({ clock: this.now })
    checkStore(this.store)
    if (options.onSecurityEvent !== undefined) {
      if (typeof options.onSecurityEvent !== 'function') throw badOption('onSecurityEvent', 'must be a function of the event')
      this.on('security', options.onSecurityEvent)
    }
  }

  /** Sends a security event to its listeners; a listener that throws does not fail the request. */
  security (event: SecurityEvent): void {
    if (this.listenerCount('security') === 0) return
    try {
      this.emit('security', event)
    } catch (err) {
      process.emitWarning(`fastify-xems: a security event listener threw: ${err instanceof Error ? err.message : String(err)}`)
    }
  }

  /**
   * A sign-in: a session reached the default sandbox with a user. Emits `new-device` when no other
   * live session of the user is of the same kind of device (browser, OS, type). A notification, not a
   * guarantee: a device whose sessions all ended counts as new again. Costs a listUser, only with listeners.
   */
  async signedIn (recordId: string, sandbox: string, userId: string | undefined, device: DeviceInfo | null | undefined): Promise<void> {
    if (userId === undefined || device == null || sandbox !== this.defaultSandbox || this.listenerCount('security') === 0) return
    let listed: SessionInfo[]
    try {
      listed = await this.#call(async () => await this.store.listUser(userId, this.now()))
    } catch {
      return
    }
    const others = listed.filter((session) => session.id !== recordId && session.sandbox === this.defaultSandbox)
    if (others.some((session) => { const seen = decodeDevice(session.device); return seen !== null && sameKindOfDevice(seen, device) })) {
      return
    }
    this.security({ type: 'new-device', at: this.now(), id: publicIdOf(recordId), userId, device })
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
  async issue (
    sandbox: string, data: Record<string, unknown> = {}, options: CreateSessionOptions = {}
  ): Promise<{ token: string, session: StoredSession }> {
    checkSandbox(sandbox, 'sandbox')
    const encoded = encodeAppData(data)
    if (options.device !== undefined) encoded[DEVICE_KEY] = encodeDevice(options.device)
    if (options.binding !== undefined) encoded[BINDING_KEY] = encodeBinding(options.binding)
    const idleTtl = options.ttl === undefined ? this.ttlOf(sandbox) : this.#checkTtl(options.ttl, 'ttl')
    const userId = checkUserId(options.userId)
    const locator = generateLocator()
    const token = sessionTokenOf(locator, generateToken())
    const now = this.now()
    const session: StoredSession = {
      id: recordIdOf(locator), sandbox, data: encoded, createdAt: now, lastSeenAt: now, idleTtl, absoluteExpiresAt: now + this.maxAge
    }
    if (userId !== undefined) session.userId = userId
    const limited = userId !== undefined && this.userLimit !== null
    const created = await this.#call(async () => await this.store.create({
      id: session.id,
      sandbox,
      tokenKey: secretKeyOf(token),
      data: encoded,
      now,
      idleTtl,
      absoluteExpiresAt: session.absoluteExpiresAt,
      ...(userId === undefined ? {} : { userId }),
      ...(limited ? { userLimit: this.userLimit! } : {})
    }))
    if (limited) this.#limited(created ?? undefined, userId!, session.id, now)
    this.emit('created', { id: publicIdOf(session.id), sandbox, ...(userId === undefined ? {} : { userId }) })
    await this.signedIn(session.id, sandbox, userId, options.device)
    return { token, session }
  }

  /**
   * Resolves a token presented by a client. Junk never reaches the store. A rotated token within its
   * window resolves, with `token` the session's current one; after it, it is the theft signal.
   */
  async open (token: unknown, sandbox?: string, gracePeriod = this.gracePeriod): Promise<Opened> {
    const parsed = parseSessionToken(token)
    if (parsed === null) return { status: 'none' }
    const presented: PresentedToken = {
      token: parsed.token, locator: parsed.locator, secret: parsed.secret, key: secretKeyOf(parsed.token)
    }
    const input: ResolveInput = {
      id: recordIdOf(parsed.locator), tokenKey: presented.key, now: this.now(), gracePeriod, revokeOnReuse: this.onReuse === 'revoke'
    }
    if (sandbox !== undefined) input.sandbox = sandbox
    // On every request: awaited here, not through #call's closure.
    let result: ResolveResult
    try {
      result = await this.store.resolve(input)
    } catch (err) {
      throw storeFailure(err)
    }
    switch (result.status) {
      case 'none':
        return result
      case 'reused': {
        const reused = {
          id: publicIdOf(result.id),
          sandbox: result.sandbox,
          revoked: result.revoked,
          ...(result.userId === undefined ? {} : { userId: result.userId })
        }
        this.emit('reuse', reused)
        return { status: 'reused', ...reused, device: decodeDevice(result.device) }
      }
      case 'live':
        return { status: 'live', session: result.session, presented, token: parsed.token }
      case 'grace':
        return { status: 'grace', session: result.session, presented, token: followChain(parsed, result.chain) }
    }
  }

  /**
   * Saves a request's changes and, when asked, rotates its token, in one store step. Returns the token
   * the client must use from now on (null when unknown), or `gone` when the session ended meanwhile.
   */
  async commit (
    session: { id: string, sandbox: string, presented: PresentedToken }, patch: DataPatch | null, rotate: boolean
  ): Promise<{ status: 'gone' } | { status: 'ok', token: string | null, expiresAt: number }> {
    const now = this.now()
    const { presented } = session
    let newToken: string | null = null
    let rotation: RotateInput | null = null
    if (rotate) {
      const secret = generateToken()
      newToken = sessionTokenOf(presented.locator, secret)
      rotation = { newKey: secretKeyOf(newToken), box: sealForTokenHolder(presented.token, secret), unseenWindow: this.unseenWindow }
    }
    let result: CommitResult
    try {
      result = await this.store.commit({ id: session.id, tokenKey: presented.key, patch, rotate: rotation, now })
    } catch (err) {
      throw storeFailure(err)
    }
    if (result.status === 'gone') return result
    if (result.rotated) {
      if (this.listenerCount('rotated') > 0) this.emit('rotated', { id: publicIdOf(session.id), sandbox: session.sandbox })
      return { status: 'ok', token: newToken, expiresAt: result.expiresAt }
    }
    const token = result.chain === null ? null : followChain(presented, result.chain)
    return { status: 'ok', token, expiresAt: result.expiresAt }
  }

  /**
   * Moves a session to another sandbox (or the same one, for a plain regenerate) with a new token; every
   * earlier token stops working at once. Null when the session is gone, in another sandbox, or was
   * already moved by a concurrent request with the same token (exactly one of them succeeds).
   */
  async migrateById (id: string, presented: PresentedToken, options: MigrateOptions): Promise<string | null> {
    checkSandbox(options.from, 'from')
    checkSandbox(options.to, 'to')
    const data = options.data === undefined ? null : encodeAppData(options.data)
    if (data !== null && options.device != null) data[DEVICE_KEY] = encodeDevice(options.device)
    if (data !== null && options.binding != null) data[BINDING_KEY] = encodeBinding(options.binding)
    const idleTtl = options.ttl === undefined ? this.ttlOf(options.to) : this.#checkTtl(options.ttl, 'ttl')
    const userId = checkUserId(options.userId)
    const token = sessionTokenOf(presented.locator, generateToken())
    const now = this.now()
    const limited = userId !== undefined && this.userLimit !== null
    const moved = await this.#call(async () => await this.store.migrate({
      id,
      tokenKey: presented.key,
      from: options.from,
      to: options.to,
      newKey: secretKeyOf(token),
      retiredUntil: now + this.unseenWindow,
      data,
      idleTtl,
      now,
      ...(userId === undefined ? {} : { userId }),
      ...(limited ? { userLimit: this.userLimit! } : {})
    }))
    if (moved === false) return null
    if (limited) this.#limited(moved, userId!, id, now)
    this.emit('migrated', { id: publicIdOf(id), from: options.from, to: options.to })
    if (options.userId !== undefined) await this.signedIn(id, options.to, options.userId, options.device)
    return token
  }

  async destroyById (id: string, sandbox: string): Promise<boolean> {
    const destroyed = await this.#call(async () => await this.store.destroy(id))
    if (destroyed) this.emit('destroyed', { id: publicIdOf(id), sandbox })
    return destroyed
  }

  /** Resolves a token for a caller outside the request cycle (a WebSocket upgrade, a job). */
  async resolveSession (token: unknown, options: ResolveSessionOptions = {}): Promise<ResolvedSession | null> {
    const sandbox = checkSandbox(options.sandbox ?? this.defaultSandbox, 'sandbox')
    const grace = options.gracePeriod === undefined ? this.gracePeriod : checkGrace(options.gracePeriod, 'gracePeriod')
    const opened = await this.open(token, sandbox, grace)
    if (opened.status !== 'live' && opened.status !== 'grace') return null
    const { session } = opened
    const binding = decodeBinding(session.data[BINDING_KEY])
    // Fail closed: the token alone is not a bound session (nothing here can check the key).
    if (binding !== null && options.allowBound !== true) return null
    let current = opened.token
    let expiresAt = Math.min(session.lastSeenAt + session.idleTtl, session.absoluteExpiresAt)
    if (options.rotate === true && opened.status === 'live') {
      const committed = await this.commit({ id: session.id, sandbox, presented: opened.presented }, null, true)
      if (committed.status === 'gone') return null
      current = committed.token
      expiresAt = committed.expiresAt
    }
    if (current === null) return null
    const resolved: ResolvedSession = {
      id: publicIdOf(session.id),
      sandbox: session.sandbox,
      data: decodeData(session.data),
      createdAt: session.createdAt,
      lastSeenAt: session.lastSeenAt,
      expiresAt,
      token: current,
      binding
    }
    if (session.userId !== undefined) resolved.userId = session.userId
    return resolved
  }

  /** Moves the session of `token` from one sandbox to another; returns its new token, or null. */
  async migrate (token: unknown, options: MigrateOptions): Promise<string | null> {
    checkSandbox(options.from, 'from')
    const opened = await this.open(token, options.from)
    if (opened.status !== 'live' && opened.status !== 'grace') return null
    return await this.migrateById(opened.session.id, opened.presented, options)
  }

  /** Ends the session of `token`, in whichever sandbox it is. */
  async destroySession (token: unknown): Promise<boolean> {
    const opened = await this.open(token)
    if (opened.status !== 'live' && opened.status !== 'grace') return false
    return await this.destroyById(opened.session.id, opened.session.sandbox)
  }

  /** Counts a hit on `key` in a fixed window (rate limits, attempt counters); store failures are 503s. */
  async hit (key: string, window: number): Promise<{ count: number, resetAt: number }> {
    return await this.#call(async () => await this.store.increment(key, window, this.now()))
  }

  async resetCounter (key: string): Promise<void> {
    await this.#call(async () => { await this.store.resetCounter(key) })
  }

  /** Ends every session of a user ("log out everywhere"), optionally but one (`except`: its public id). */
  async revokeUser (userId: string, options: { except?: string | undefined } = {}): Promise<number> {
    checkUserId(userId)
    let exceptId: string | undefined
    if (options.except !== undefined) {
      // The public id is one-way; the record it names is found among the user's own sessions.
      const sessions = await this.#call(async () => await this.store.listUser(userId, this.now()))
      exceptId = sessions.find((session) => publicIdOf(session.id) === options.except)?.id
    }
    const count = await this.#call(async () => await this.store.revokeUser(userId, this.now(), exceptId))
    this.emit('revoked', { userId, count })
    this.security({
      type: 'user-revoked', userId, count, ...(options.except === undefined ? {} : { except: options.except }), at: this.now()
    })
    return count
  }

  /**
   * Ends one session of a user, named by its public id ("sign out" on a row of "Your devices"). False
   * when the user has no such live session: an id of another user's session is refused, in the store's
   * one atomic step that checks the owner and ends it.
   */
  async revokeSession (userId: string, publicId: string): Promise<boolean> {
    checkUserId(userId)
    if (typeof publicId !== 'string' || publicId.length === 0 || publicId.length > 64) return false
    const now = this.now()
    const sessions = await this.#call(async () => await this.store.listUser(userId, now))
    const target = sessions.find((session) => publicIdOf(session.id) === publicId)
    if (target === undefined) return false
    const ended = await this.#call(async () => await this.store.revokeUserSession(userId, target.id, now))
    if (ended) {
      this.emit('destroyed', { id: publicId, sandbox: target.sandbox })
      this.security({ type: 'session-revoked', userId, id: publicId, at: now })
    }
    return ended
  }

  /**
   * The live sessions of a user, newest use first, named by their public ids, each with its device
   * record and `current: true` for the session of `options.current` (a request).
   */
  async listUserSessions (userId: string, options: ListUserSessionsOptions = {}): Promise<UserSessionInfo[]> {
    checkUserId(userId)
    const current = typeof options.current === 'string' ? options.current : options.current?.session?.id
    const sessions = await this.#call(async () => await this.store.listUser(userId, this.now()))
    return sessions
      .map(({ device, ...session }) => {
        const id = publicIdOf(session.id)
        return { ...session, id, device: decodeDevice(device), current: id === current }
      })
      .sort((a, b) => b.lastSeenAt - a.lastSeenAt || b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1))
  }

  async close (): Promise<void> {
    await this.store.close()
  }

  /**
   * What the store answered to a create or migration under maxSessionsPerUser: a refusal is the 409,
   * each session it ended a `session-limit-ended` security event.
   */
  #limited (result: LimitResult | boolean | undefined, userId: string, recordId: string, now: number): void {
    if (result === undefined || typeof result === 'boolean' || (result.status !== 'admitted' && result.status !== 'refused')) {
      throw badOption(
        'maxSessionsPerUser',
        'needs a store that applies userLimit (SessionStore.create and migrate answer a LimitResult; see docs/stores.md)'
      )
    }
    if (result.status === 'refused') {
      this.security({ type: 'session-limit-refused', at: now, userId, reason: 'max-sessions-per-user' })
      throw sessionLimitError()
    }
    const by = publicIdOf(recordId)
    for (const ended of result.ended) {
      const id = publicIdOf(ended)
      this.security({ type: 'session-limit-ended', at: now, userId, id, by, reason: 'max-sessions-per-user' })
    }
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
      throw storeFailure(err)
    }
  }
}

/** What a store's failure is thrown as: a 503 FST_XEMS_STORE_UNAVAILABLE; our own errors as they are. */
function storeFailure (err: unknown): unknown {
  return isXemsError(err) ? err : xemsError('FST_XEMS_STORE_UNAVAILABLE', [], { cause: err })
}

/** The one error of a refused sign-in under maxSessionsPerUser (409). */
export function sessionLimitError (): XemsError {
  return xemsError('FST_XEMS_SESSION_LIMIT')
}

function checkUserLimit (value: MaxSessionsPerUser | undefined): UserLimit | null {
  if (value === undefined) return null
  if (value === null || typeof value !== 'object') {
    throw badOption('maxSessionsPerUser', "must be an object { limit, onLimit: 'end-oldest' | 'refuse' }")
  }
  if (!Number.isInteger(value.limit) || value.limit < 1 || value.limit > 1000) {
    throw badOption('maxSessionsPerUser.limit', 'must be a whole number from 1 to 1000')
  }
  if (value.onLimit !== 'end-oldest' && value.onLimit !== 'refuse') {
    throw badOption('maxSessionsPerUser.onLimit', "must be 'end-oldest' or 'refuse'")
  }
  return { max: value.limit, onLimit: value.onLimit }
}

function checkGrace (value: Duration, option: string): number {
  const ms = parseDuration(value, option)
  if (ms > 60_000) throw badOption(option, 'must be at most 1 minute: grace is for requests in flight, not for keeping old tokens alive')
  return ms
}

/** Opens the grace boxes one after another, from the presented token to the current one. */
function followChain (presented: ParsedToken, chain: string[]): string | null {
  let current = presented.token
  for (const box of chain) {
    const secret = openAsTokenHolder(current, box)
    if (secret === null) return null
    current = sessionTokenOf(presented.locator, secret)
  }
  return current
}

export function checkSandbox (name: unknown, option: string): string {
  if (typeof name !== 'string' || !SANDBOX_NAME.test(name)) {
    throw xemsError('FST_XEMS_BAD_SANDBOX', [option])
  }
  return name
}

function checkKey (key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw xemsError('FST_XEMS_BAD_VALUE', ['a key', `it must be a string of 1 to ${MAX_KEY_LENGTH} characters`])
  }
  return key
}

function checkUserId (userId: unknown): string | undefined {
  if (userId === undefined) return undefined
  if (typeof userId !== 'string' || userId.length === 0 || userId.length > MAX_KEY_LENGTH) {
    throw xemsError('FST_XEMS_BAD_VALUE', ['a userId', `it must be a string of 1 to ${MAX_KEY_LENGTH} characters`])
  }
  return userId
}

/** The application's data, encoded; the reserved device key is not the application's to set. */
function encodeAppData (data: Record<string, unknown>): EncodedData {
  assertNoReservedKey(data)
  return encodeData(data)
}

function encodeStored (value: unknown, key: string): string {
  const text = encodeValue(value, `value of "${key}"`)
  if (text === undefined) throw xemsError('FST_XEMS_BAD_VALUE', [`value of "${key}"`, 'it is undefined or a function'])
  return text
}

const STORE_METHODS = [
  'create', 'resolve', 'commit', 'migrate', 'destroy', 'revokeUserSession', 'revokeUser', 'listUser', 'kvGet', 'kvSet', 'kvDel', 'kvAdd',
  'kvTake', 'increment', 'resetCounter', 'close'
] as const

function checkStore (store: unknown): void {
  const missing = STORE_METHODS.filter((method) => typeof (store as Record<string, unknown> | null)?.[method] !== 'function')
  if (missing.length > 0) throw badOption('store', `must implement the SessionStore contract; missing: ${missing.join(', ')}`)
}

export type { EncodedData }
