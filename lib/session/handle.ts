import type { Duration } from '../duration.js'
import type { PresentedToken, XemsEngine } from './engine.js'
import { xemsError } from '../errors.js'
import { checkSignIn, decodeSharedDevice, deviceAfterUse, encodeDevice, type DeviceInfo, type SignInMethod } from '../device.js'
import { decodeBinding, encodeBinding, type SessionBinding, type UnreadableBinding } from '../binding/binding.js'
import { assertNoReservedKey, decodeData, diffData, encodeData } from './data.js'
import { parseSessionToken, publicIdOf, secretKeyOf } from './token.js'
import { BINDING_KEY, DEVICE_KEY, type EncodedData, type StoredSession } from '../store/contract.js'

/** What the end of a request must do with the client's token. */
export type Outcome =
  | { action: 'keep' }
  | { action: 'set', token: string, absoluteExpiresAt: number }
  | { action: 'clear' }

export interface FinishOptions {
  rotate: boolean
}

export interface SessionMigrateOptions {
  /** Replaces the session data when given; otherwise the data (with this request's changes) is kept. */
  data?: Record<string, unknown> | undefined
  ttl?: Duration | undefined
  userId?: string | undefined
  /** How the user signed in, kept in the device record (the MFA plugin sets it). */
  signIn?: SignInMethod | undefined
}

type Mode =
  /** Resolved by the session's current token: rotates at the end of the request. */
  | 'live'
  /** Resolved by a rotated token within its window: answered with the current token, no new rotation. */
  | 'grace'
  /** A token issued during this request (new session, regenerate, migrate): sent as is. */
  | 'issued'
  /** Ended by this request (destroy, logout): the response clears the cookie. */
  | 'destroyed'
  /**
   * Ended elsewhere meanwhile (revoked, or moved by a concurrent request). The cookie is left alone:
   * clearing it could race with the response that carries the session's new token.
   */
  | 'lost'

/**
 * One request's view of its session (`request.session`): typed data, saved at the end of the request
 * when changed, plus regenerate / destroy / migrate. Framework-free; the plugin calls `finish`.
 */
export class XemsSession<Data = Record<string, unknown>> {
  #publicId: string | null = null
  sandbox: string
  /**
   * The session data (typed): change it freely; the top-level keys this request changed are saved at its
   * end. Decoded from the store's text the first time the request reads it (or replaced when it assigns
   * it), so a request that never touches it decodes nothing and diffs nothing. An own enumerable accessor
   * (DATA below), as a plain field would be: JSON, spreads and Object.keys of the session carry it.
   */
  declare data: Data
  #data: Data | undefined
  #dataLoaded = false
  userId?: string | undefined
  readonly createdAt: number
  /** When the session ends if unused (idle timeout or absolute cap, whichever is first). */
  expiresAt: number
  /** The absolute deadline: creation + maxAge, never extended. */
  readonly absoluteExpiresAt: number

  readonly #engine: XemsEngine
  /** The store's name of the session (never shown: with it, logs could aim at a session's record). */
  readonly #recordId: string
  #original: EncodedData
  #mode: Mode
  #presented: PresentedToken
  /**
   * The session's migration count when #presented was admitted (resolved, or issued by this request):
   * the commit passes it, so that a token the session pruned meanwhile writes only if no migration came since.
   */
  #migrations: number | undefined
  /** The token the client must hold from now on, when known. */
  #token: string | null
  #touched = false
  /** The device record (frozen: replaced, never changed in place); dirty when this request changed it (saved with the commit). */
  #device: DeviceInfo | null
  #deviceDirty = false
  /** The key binding (DBSC, DPoP); dirty when this request bound the session (saved with the commit). */
  #binding: SessionBinding | UnreadableBinding | null
  #bindingDirty = false

  constructor (
    engine: XemsEngine, stored: StoredSession, mode: 'live' | 'grace' | 'issued', presented: PresentedToken, currentToken: string | null
  ) {
    this.#engine = engine
    this.#recordId = stored.id
    this.sandbox = stored.sandbox
    Object.defineProperty(this, 'data', XemsSession.#DATA)
    this.#device = decodeSharedDevice(stored.data[DEVICE_KEY])
    this.#binding = decodeBinding(stored.data[BINDING_KEY])
    if (stored.userId !== undefined) this.userId = stored.userId
    this.createdAt = stored.createdAt
    this.absoluteExpiresAt = stored.absoluteExpiresAt
    this.expiresAt = Math.min(stored.lastSeenAt + stored.idleTtl, stored.absoluteExpiresAt)
    // The stored data as loaded, reserved keys included: diffData leaves those to this class.
    this.#original = stored.data
    this.#mode = mode
    this.#presented = presented
    this.#migrations = stored.migrations
    this.#token = currentToken
  }

  /** The accessor of `data`, one pair for every session (so they share their shape). */
  static readonly #DATA: PropertyDescriptor = {
    enumerable: true,
    configurable: false,
    get (this: XemsSession): unknown {
      if (!this.#dataLoaded) {
        this.#data = decodeData(this.#original)
        this.#dataLoaded = true
      }
      return this.#data
    },
    set (this: XemsSession, value: unknown): void {
      this.#data = value as Record<string, unknown>
      this.#dataLoaded = true
    }
  }

  /** The session's public id, stable for its whole life: for logs and device lists. It opens nothing. */
  get id (): string {
    this.#publicId ??= publicIdOf(this.#recordId)
    return this.#publicId
  }

  /** What the session recorded of its device (user agent, IP, how the user signed in), or null. */
  get device (): DeviceInfo | null {
    return this.#device === null ? null : { ...this.#device }
  }

  /**
   * Records this request's user agent and IP in the device record when they changed (saved with the
   * request's commit, no extra store call). The plugin calls it for every request of the session.
   */
  noteUse (userAgent: unknown, ip: unknown, recordIp: boolean): void {
    if (this.#device === null) return
    const next = deviceAfterUse(this.#device, userAgent, ip, recordIp)
    if (next !== null) {
      this.#device = next
      this.#deviceDirty = true
    }
  }

  /**
   * The key the session is bound to (DBSC: the browser's device key; DPoP: the client's key thumbprint),
   * or null when it is not bound. `unreadable` (a stored binding that does not decode) is never served.
   */
  get binding (): SessionBinding | UnreadableBinding | null {
    return this.#binding === null ? null : { ...this.#binding }
  }

  /**
   * Binds the session to a key (saved with this request's commit). The binding plugins call it once the
   * client proved possession of the key; a session is bound once: a second binding is refused.
   */
  bind (binding: SessionBinding): void {
    this.#assertUsable()
    if (this.#binding !== null) throw xemsError('FST_XEMS_BAD_VALUE', ['a second key binding', 'the session is already bound to a key'])
    this.#binding = { ...binding }
    this.#bindingDirty = true
  }

  /** True once the session ended (destroyed by this request, or ended elsewhere meanwhile). */
  get destroyed (): boolean {
    return this.#mode === 'destroyed' || this.#mode === 'lost'
  }

  /** Saves the session at the end of the request even if its data did not change. */
  touch (): void {
    this.#touched = true
  }

  /**
   * A new token for the same session, keeping its data; every earlier token dies at once, with no
   * grace. Call it when the user (re-)authenticates or gains privileges.
   */
  async regenerate (): Promise<void> {
    await this.migrate(this.sandbox)
  }

  /**
   * Moves the session to another sandbox (pending → active after MFA) with a new token; every earlier
   * token stops working at once. Concurrent migrations or regenerations of one session: exactly one
   * succeeds; the others get FST_XEMS_NO_SESSION (401), and no response carries a token that died.
   */
  async migrate (to: string, options: SessionMigrateOptions = {}): Promise<void> {
    this.#assertUsable()
    const signIn = checkSignIn(options.signIn)
    if (signIn !== undefined && this.#device !== null) {
      this.#device = { ...this.#device, signIn }
      this.#deviceDirty = true
    }
    const { signIn: _ignored, ...rest } = options
    const binding = this.#binding === null || this.#binding.type === 'unreadable' ? null : this.#binding
    const token = await this.#engine.migrateById(
      this.#recordId, this.#presented, { from: this.sandbox, to, ...rest, device: this.#device, binding }
    )
    if (token === null) {
      this.#mode = 'lost'
      throw xemsError('FST_XEMS_NO_SESSION')
    }
    if (options.data !== undefined) {
      const encoded = encodeData(options.data)
      this.data = decodeData(encoded) as Data
      this.#original = encoded
      // The engine wrote the device record and the binding with the new data.
      this.#deviceDirty = false
      this.#bindingDirty = false
    }
    if (options.userId !== undefined) this.userId = options.userId
    this.sandbox = to
    this.#mode = 'issued'
    this.#presented = presentedOf(token)
    // This request's own migration: one more (a concurrent one would have retired its token, and failed it).
    if (this.#migrations !== undefined) this.#migrations++
    this.#token = token
  }

  /**
   * Ends the session in the store, with every token of it; the response clears the cookie. A request
   * whose token a concurrent migration retired (a regenerate, pending → active) ends nothing, since the
   * migrated session, maybe signed in now, may be another's: the store judges the token in the same step, as
   * a commit does. Such a logout does not claim success either: it throws FST_XEMS_NO_SESSION (401) and
   * the response leaves the cookie alone, so a user whose own tab won the race still holds the migrated
   * session's token, is told the logout did not happen, and can sign out again with that token.
   */
  async destroy (): Promise<void> {
    if (this.#mode === 'destroyed') return
    this.#mode = 'destroyed'
    let ended: boolean | 'retired'
    try {
      ended = await this.#engine.destroyById(
        this.#recordId, this.sandbox, { tokenKey: this.#presented.key, migrations: this.#migrations, now: this.#engine.now() }
      )
    } catch (err) {
      // The store did not confirm (an outage: a timeout, a lost connection): the session may live on, so
      // the response must not clear the cookie, or the user could never sign it out. Nothing is sent
      // about the token; the session is unusable for the rest of this request.
      this.#mode = 'lost'
      throw err
    }
    if (ended === 'retired') {
      this.#mode = 'lost'
      throw xemsError('FST_XEMS_NO_SESSION')
    }
  }

  /**
   * Ends the request: commits changed data and rotates in one store step, and says what to send. Throws
   * FST_XEMS_NO_SESSION (401) when this request has changes to save but a concurrent migration retired its
   * token meanwhile: nothing was saved, and nothing is sent about the token.
   */
  async finish (options: FinishOptions): Promise<Outcome> {
    if (this.#mode === 'destroyed') return { action: 'clear' }
    if (this.#mode === 'lost') return { action: 'keep' }
    // Data never read nor assigned by this request is unchanged: nothing to compare.
    let patch = this.#dataLoaded ? diffData(this.#original, this.#data as Record<string, unknown>) : null
    assertNoReservedKey(patch)
    if (this.#deviceDirty && this.#device !== null) {
      patch ??= Object.create(null) as Record<string, string | null>
      patch[DEVICE_KEY] = encodeDevice(this.#device)
      this.#deviceDirty = false
    }
    if (this.#bindingDirty && this.#binding !== null && this.#binding.type !== 'unreadable') {
      patch ??= Object.create(null) as Record<string, string | null>
      patch[BINDING_KEY] = encodeBinding(this.#binding)
      this.#bindingDirty = false
    }
    const rotate = this.#mode === 'live' && options.rotate
    // A request resolved in grace asks the store at its end too: the token current when it opened may
    // have rotated on since (its successor presented: soon the theft signal), or have been retired by
    // a concurrent migration. Sending it as learnt at open could leave the browser, which keeps the
    // last Set-Cookie it receives, holding a token that signs it out or makes it a thief.
    if (patch === null && !rotate && !this.#touched && this.#mode !== 'grace') {
      return this.#mode === 'live' || this.#token === null
        ? { action: 'keep' }
        : { action: 'set', token: this.#token, absoluteExpiresAt: this.absoluteExpiresAt }
    }
    const committed = await this.#engine.commit(
      { id: this.#recordId, sandbox: this.sandbox, presented: this.#presented, migrations: this.#migrations }, patch, rotate
    )
    if (committed.status !== 'ok') {
      this.#mode = 'lost'
      // The presented token was retired by a concurrent migration (regenerate, pending → active) since this
      // request resolved: the store wrote nothing. A request with changes to save must not claim success
      // (401, the cookie left alone: the client most likely holds the migration's token already, and
      // clearing it would sign it out). One with nothing to save (a read, a touch) keeps its answer.
      if (committed.status === 'retired' && patch !== null) throw xemsError('FST_XEMS_NO_SESSION')
      return { action: 'keep' }
    }
    this.expiresAt = committed.expiresAt
    // No token known (a presented token retired by a migration meanwhile): nothing is sent, so the
    // winner's token stays what the client holds. A token issued by this request is sent as issued.
    const token = committed.token ?? (this.#mode === 'issued' ? this.#token : null)
    if (token === null || (token === this.#presented.token && this.#mode === 'live')) return { action: 'keep' }
    return { action: 'set', token, absoluteExpiresAt: this.absoluteExpiresAt }
  }

  #assertUsable (): void {
    if (this.destroyed) throw xemsError('FST_XEMS_NO_SESSION')
  }
}

/** A token this process just issued, in the shape the engine takes a presented one. */
export function presentedOf (token: string): PresentedToken {
  const parsed = parseSessionToken(token)
  if (parsed === null) throw new TypeError('presentedOf: not a session token')
  return { ...parsed, key: secretKeyOf(token) }
}
