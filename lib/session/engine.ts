import { EventEmitter } from 'node:events'
import { successorOf } from '../crypto/cipher.js'
import { parsePositiveDuration } from '../duration.js'
import { decodeDevice, encodeDevice, type DeviceInfo } from '../device.js'
import { badOption } from '../errors.js'
import type { SecurityEvent } from '../security-events.js'
import { encodeBinding } from '../binding/binding.js'
import {
  generateLocator, parseSessionToken, publicIdOf, recordIdOf, secretKeyOf, sessionTokenOf
} from './token.js'
import {
  BINDING_KEY, DEVICE_KEY, type CommitResult, type DataPatch, type EncodedData, type ResolveInput,
  type PresentedCheck, type ResolveResult, type RotateInput, type SessionStore, type StoredSession, type UserLimit
} from '../store/contract.js'
import { MemoryStore } from '../store/memory/memory-store.js'
import { generateToken } from '../crypto/random-token.js'
import { checkSandbox, checkUserId, encodeAppData } from './checks.js'
import {
  checkGrace, checkStore, checkTtl, checkUserLimit, DEFAULT_SANDBOX, MAX_AGE_CAP_MS, type EngineOptions, type ReuseAction
} from './options.js'
import type {
  CreateSessionOptions, MigrateOptions, Opened, PresentedToken, ResolvedSession, ResolveSessionOptions, XemsEvents
} from './engine-types.js'
import { followChain } from './grace-chain.js'
import { resolveSession } from './resolve-session.js'
import { callStore, storeFailure } from './store-call.js'
import {
  applyUserLimit, listUserSessions, revokeSession, revokeUser, signedIn, type ListUserSessionsOptions, type UserSessionInfo
} from './users.js'
import { sandboxValues, type SandboxValues } from './values.js'

export { MAX_AGE_CAP_MS, DEFAULT_SANDBOX } from './options.js'
export type { EngineOptions, MaxSessionsPerUser, ReuseAction, SandboxOptions } from './options.js'
export type * from './engine-types.js'
export type { ListUserSessionsOptions, UserSessionInfo } from './users.js'
export { sessionLimitError } from './users.js'
export type { SandboxValues } from './values.js'
export { checkSandbox } from './checks.js'

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
    this.#defaultTtl = checkTtl(options.ttl ?? '1h', 'ttl', this.maxAge)
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
        if (settings?.ttl !== undefined) this.#ttls.set(name, checkTtl(settings.ttl, `sandboxes.${name}.ttl`, this.maxAge))
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

  /** A sign-in: emits `new-device` when it is one (see users.ts signedIn). */
  async signedIn (recordId: string, sandbox: string, userId: string | undefined, device: DeviceInfo | null | undefined): Promise<void> {
    await signedIn(this, recordId, sandbox, userId, device)
  }

  /** The idle lifetime of a sandbox. */
  ttlOf (sandbox: string): number {
    return this.#ttls.get(sandbox) ?? this.#defaultTtl
  }

  /** The values of one sandbox (see values.ts). */
  from (sandbox: string): SandboxValues {
    return sandboxValues(this, sandbox)
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
    const idleTtl = options.ttl === undefined ? this.ttlOf(sandbox) : checkTtl(options.ttl, 'ttl', this.maxAge)
    const userId = checkUserId(options.userId)
    const locator = generateLocator()
    const token = sessionTokenOf(locator, generateToken())
    const now = this.now()
    const session: StoredSession = {
      id: recordIdOf(locator),
      sandbox,
      data: encoded,
      createdAt: now,
      lastSeenAt: now,
      idleTtl,
      absoluteExpiresAt: now + this.maxAge,
      migrations: 0
    }
    if (userId !== undefined) session.userId = userId
    const limited = userId !== undefined && this.userLimit !== null
    const created = await callStore(async () => await this.store.create({
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
    if (limited) applyUserLimit(this, created ?? undefined, userId!, session.id, now)
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
      case 'retired':
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
   * the client must use from now on (null when unknown), `gone` when the session ended meanwhile, or
   * `retired` when a concurrent migration retired the presented token meanwhile (nothing was written).
   */
  async commit (
    session: { id: string, sandbox: string, presented: PresentedToken, migrations?: number | undefined },
    patch: DataPatch | null,
    rotate: boolean
  ): Promise<{ status: 'gone' | 'retired' } | { status: 'ok', token: string | null, expiresAt: number }> {
    const now = this.now()
    const { presented } = session
    let newToken: string | null = null
    let rotation: RotateInput | null = null
    if (rotate) {
      const { secret, box } = successorOf(presented.token)
      newToken = sessionTokenOf(presented.locator, secret)
      rotation = { newKey: secretKeyOf(newToken), box, unseenWindow: this.unseenWindow }
    }
    let result: CommitResult
    try {
      const { migrations } = session
      result = await this.store.commit({ id: session.id, tokenKey: presented.key, patch, rotate: rotation, now, migrations })
    } catch (err) {
      throw storeFailure(err)
    }
    if (result.status === 'gone' || result.status === 'retired') return result
    if (result.rotated) {
      if (this.listenerCount('rotated') > 0) this.emit('rotated', { id: publicIdOf(session.id), sandbox: session.sandbox })
      return { status: 'ok', token: newToken, expiresAt: result.expiresAt }
    }
    // No chain: a rotated token pruned while the request ran; its changes were saved, no token is learnt.
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
    const idleTtl = options.ttl === undefined ? this.ttlOf(options.to) : checkTtl(options.ttl, 'ttl', this.maxAge)
    const userId = checkUserId(options.userId)
    const token = sessionTokenOf(presented.locator, generateToken())
    const now = this.now()
    const limited = userId !== undefined && this.userLimit !== null
    const moved = await callStore(async () => await this.store.migrate({
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
    if (limited) applyUserLimit(this, moved, userId!, id, now)
    this.emit('migrated', { id: publicIdOf(id), from: options.from, to: options.to })
    if (options.userId !== undefined) await this.signedIn(id, options.to, options.userId, options.device)
    return token
  }

  /**
   * Ends a session; with `presented` (a request's logout), only if that token may still write to it:
   * `'retired'` when a concurrent migration retired it meanwhile (nothing ended).
   */
  async destroyById (id: string, sandbox: string, presented?: PresentedCheck): Promise<boolean | 'retired'> {
    const destroyed = await callStore(async () => await this.store.destroy(id, presented))
    if (destroyed === true) this.emit('destroyed', { id: publicIdOf(id), sandbox })
    return destroyed
  }

  /** Resolves a token for a caller outside the request cycle (a WebSocket upgrade, a job): see resolve-session.ts. */
  async resolveSession (token: unknown, options: ResolveSessionOptions = {}): Promise<ResolvedSession | null> {
    return await resolveSession(this, token, options)
  }

  /** Moves the session of `token` from one sandbox to another; returns its new token, or null. */
  async migrate (token: unknown, options: MigrateOptions): Promise<string | null> {
    checkSandbox(options.from, 'from')
    const opened = await this.open(token, options.from)
    if (opened.status !== 'live' && opened.status !== 'grace') return null
    return await this.migrateById(opened.session.id, opened.presented, options)
  }

  /**
   * Ends the session of `token`, in whichever sandbox it is. False when nothing ended: no session, or a
   * concurrent migration retired the token between its lookup and the delete (the migrated session lives on).
   */
  async destroySession (token: unknown): Promise<boolean> {
    const opened = await this.open(token)
    if (opened.status !== 'live' && opened.status !== 'grace') return false
    const presented = { tokenKey: opened.presented.key, migrations: opened.session.migrations, now: this.now() }
    return await this.destroyById(opened.session.id, opened.session.sandbox, presented) === true
  }

  /** Counts a hit on `key` in a fixed window (rate limits, attempt counters); store failures are 503s. */
  async hit (key: string, window: number): Promise<{ count: number, resetAt: number }> {
    try {
      return await this.store.increment(key, window, this.now())
    } catch (err) {
      throw storeFailure(err)
    }
  }

  async resetCounter (key: string): Promise<void> {
    await callStore(async () => { await this.store.resetCounter(key) })
  }

  /** Ends every session of a user ("log out everywhere"), optionally but one (`except`: its public id). */
  async revokeUser (userId: string, options: { except?: string | undefined } = {}): Promise<number> {
    return await revokeUser(this, userId, options)
  }

  /** Ends one session of a user, named by its public id; false when the user has no such live session (see users.ts). */
  async revokeSession (userId: string, publicId: string): Promise<boolean> {
    return await revokeSession(this, userId, publicId)
  }

  /** The live sessions of a user, newest use first, by public id, `current: true` for `options.current` (see users.ts). */
  async listUserSessions (userId: string, options: ListUserSessionsOptions = {}): Promise<UserSessionInfo[]> {
    return await listUserSessions(this, userId, options)
  }

  async close (): Promise<void> {
    await this.store.close()
  }
}

export type { EncodedData }
