import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { renderSVG } from 'uqr'
import { parsePositiveDuration, type Duration } from '../../lib/duration.js'
import { checkSandbox, MAX_AGE_CAP_MS } from '../../lib/session/engine.js'
import { createHmac, randomBytes } from 'node:crypto'
import { sha } from '../../lib/crypto/cipher.js'
import { badOption, XemsError, xemsError } from '../../lib/errors.js'
import { MAX_PASSWORD_LENGTH, verifyPassword as verifyArgon2, type PasswordHashOptions } from '../../lib/mfa/password.js'
import { findRecoveryCode, generateRecoveryCodes, hashRecoveryCodes, normalizeRecoveryCode } from '../../lib/mfa/recovery-codes.js'
import { generateToken, isWellFormedToken, tokenKey } from '../../lib/crypto/random-token.js'
import { generateTotpSecret, totpUri, verifyTotp, type TotpAlgorithm } from '../../lib/mfa/totp.js'
import { readRawCookie } from '../session/raw-cookie.js'
import type { XemsDecorator } from '../session/index.js'
import type { PasskeyCredential, PasskeyInfo, PasskeyOptions } from '../../lib/mfa/passkey.js'
import type { PasskeyApi, PasskeyAuthResult, PasskeyCreationOptions, PasskeyRequestOptions, MfaCore } from './passkeys.js'

export type { PasskeyCredential, PasskeyInfo, PasskeyOptions, PasskeyAuthResult, PasskeyCreationOptions, PasskeyRequestOptions }

/** A user's second factors, as the application stores them (in its own user database). */
export interface MfaRecord {
  totp?: { secret: string, algorithm?: TotpAlgorithm | undefined, digits?: number | undefined, period?: number | undefined, enrolledAt: number } | null | undefined
  /** argon2id hashes of recovery codes; a used one is null. */
  recoveryCodes?: Array<string | null> | undefined
  /** The user's passkeys (with the `passkeys` option). */
  passkeys?: PasskeyCredential[] | undefined
  /** The random WebAuthn user handle of this user's passkeys (base64url): what passwordless sign-in finds the user by. */
  passkeyUserHandle?: string | undefined
}

/** How the plugin reads and writes a user's MFA record. `save` should replace the record atomically. */
export interface MfaUserAdapter {
  load: (userId: string) => Promise<MfaRecord | null>
  save: (userId: string, record: MfaRecord) => Promise<void>
  /**
   * The user whose MfaRecord has this `passkeyUserHandle`, or null. Needed for passwordless passkey
   * sign-in only (index the handle in your user table).
   */
  findUserByPasskey?: ((userHandle: string) => Promise<string | null>) | undefined
}

export interface MfaLockoutOptions {
  /**
   * Guesses (password, code, enrolment or step-up) evaluated per user within `window` (default 10, at
   * most 10). Each guess is counted before it is evaluated; past this number the user is throttled
   * (429 with Retry-After) until the window ends, whatever is tried, so no parallel burst gets more.
   */
  maxFailures?: number | undefined
  /** The throttling window, fixed from its first guess (default `15m`, at most 5 days). */
  window?: Duration | undefined
  /**
   * Guesses without a successful sign-in, across windows, after which the account accepts none until
   * 5 days after the first of them (default 100, at most 100: NIST 800-63B 5.2.2). `unlock` lifts it.
   */
  maxConsecutive?: number | undefined
}

export interface XemsMfaOptions {
  /** Shown in the authenticator app. */
  issuer: string
  users: MfaUserAdapter
  /** Sandbox of half-authenticated sessions (default `otp-pending`). */
  pendingSandbox?: string | undefined
  /** Sandbox a verified session moves to (default: the session plugin's default sandbox). */
  activeSandbox?: string | undefined
  /** Lifetime of a pending session (default `15m`, at most 15 minutes). */
  pendingTtl?: Duration | undefined
  /** Steps of clock drift accepted either side (default 1, at most 10). */
  window?: number | undefined
  /** Code attempts per pending session (default 5, at most 10); past it the pending session ends. */
  maxAttempts?: number | undefined
  lockout?: MfaLockoutOptions | undefined
  /** Recovery codes issued at enrolment (default 10). */
  recoveryCodes?: number | undefined
  /** Opt-in "remember this device": an HttpOnly device cookie that skips the TOTP step for `ttl` (at most 5 days). */
  rememberDevice?: false | { ttl?: Duration | undefined, cookieName?: string | undefined, secure?: boolean | undefined } | undefined
  /** TOTP parameters of new enrolments (defaults SHA1, 6 digits, 30 s: what every authenticator app supports). */
  totp?: { algorithm?: TotpAlgorithm | undefined, digits?: number | undefined, period?: number | undefined } | undefined
  /** argon2id parameters for recovery-code hashes and password checks. */
  argon2?: PasswordHashOptions | undefined
  /**
   * How recent a second-factor verification must be to change or remove an existing factor
   * (re-enrolment, disable, new recovery codes). Default `10m`, at most 1 hour.
   */
  freshFor?: Duration | undefined
  /** Passkeys (WebAuthn) as a second factor, for step-up and for passwordless sign-in (docs/mfa.md, "Passkeys"). Off by default. */
  passkeys?: PasskeyOptions | undefined
}

export interface BeginOptions {
  userId: string
  /** Session data to carry into the active session. */
  data?: Record<string, unknown> | undefined
}

export interface BeginResult {
  /**
   * `totp`: ask for a code (or a passkey, when the user has one too: see `methods`). `passkey`: the
   * user has passkeys only. `active`: signed in (no second factor enrolled, or a remembered device).
   */
  next: 'totp' | 'passkey' | 'active'
  /** The second factors the pending session accepts (with the `passkeys` option; absent when `next` is `active`). */
  methods?: Array<'totp' | 'passkey'> | undefined
  enrolled: boolean
  remembered: boolean
}

export interface VerifyResult {
  method: 'totp' | 'recovery'
  /** Unused recovery codes left, after a recovery-code login. */
  recoveryCodesLeft?: number | undefined
}

export interface Enrolment {
  secret: string
  uri: string
  /** The otpauth URI as a QR code, an SVG document. */
  qrSvg: string
}

export interface XemsMfa {
  /**
   * Checks a password (argon2id). Pass the login name the client tried as `userId` even when no such
   * user exists, with `hash` null: the check takes the same time and fails, and the guess is throttled
   * per name either way, so neither time nor a 429 tells which accounts exist. The guess is counted
   * before it is evaluated: past the limit it answers 429 FST_XEMS_MFA_LOCKED without evaluating.
   * A name over 256 characters, or a password that is empty or over 1024 characters, is refused with
   * 400 FST_XEMS_MFA_BAD_INPUT before any store work. Pass the request to log through its logger.
   */
  verifyPassword: (userId: string | null, password: string, hash: string | null | undefined, request?: FastifyRequest) => Promise<boolean>
  /**
   * Throws 429 FST_XEMS_MFA_LOCKED (with Retry-After) when the user is known to be throttled or locked.
   * Advisory, for answering early: the decision is made, atomically, by each guess itself.
   */
  assertNotLocked: (userId: string, reply?: FastifyReply) => Promise<void>
  /** Lifts a user's throttling and lock (e.g. after an out-of-band check such as an email link). */
  unlock: (userId: string) => Promise<void>
  /** After the password step: opens the pending session (or, without a second factor or on a remembered device, the active one). */
  begin: (request: FastifyRequest, reply: FastifyReply, options: BeginOptions) => Promise<BeginResult>
  /** Verifies a TOTP or recovery code against the request's pending session and, on success, moves it to the active sandbox. */
  verify: (request: FastifyRequest, reply: FastifyReply, code: unknown, options?: { remember?: boolean | undefined }) => Promise<VerifyResult>
  /**
   * Starts (or restarts) TOTP enrolment for the signed-in user; nothing is stored for the user until
   * confirmEnrolment. When the user already has a factor, both steps need a second factor verified
   * within `freshFor` (401 FST_XEMS_MFA_REQUIRED otherwise).
   */
  startEnrolment: (request: FastifyRequest, options?: { label?: string | undefined }) => Promise<Enrolment>
  /**
   * Confirms enrolment with a first valid code; stores it, returns the recovery codes (show them once),
   * ends the user's other sessions. It does not make the session's second factor fresh.
   */
  confirmEnrolment: (request: FastifyRequest, code: unknown) => Promise<{ recoveryCodes: string[] }>
  /** Re-verifies a code for the signed-in user (step-up); refreshes the session's mfaVerifiedAt. */
  stepUp: (request: FastifyRequest, reply: FastifyReply, code: unknown) => Promise<VerifyResult>
  /**
   * Removes the user's second factors; ends the user's other sessions and remembered devices. Needs a
   * second factor verified within `freshFor` (401 FST_XEMS_MFA_REQUIRED otherwise); check the password in the route.
   */
  disable: (request: FastifyRequest) => Promise<void>
  /** New recovery codes (the old ones die). Needs a second factor verified within `freshFor`. */
  regenerateRecoveryCodes: (request: FastifyRequest) => Promise<string[]>
  /** A preHandler: 401 FST_XEMS_MFA_REQUIRED unless the active session verified a second factor within `maxAge`. */
  requireFreshMfa: (maxAge: Duration) => preHandlerAsyncHookHandler
  /** Ends every session and remembered device of a user. */
  revokeUser: (userId: string, options?: { except?: string | undefined }) => Promise<number>
  /**
   * Passkey registration for the signed-in user: the options for `navigator.credentials.create`
   * (@simplewebauthn/browser `startRegistration`). When the user already has a factor, both steps
   * need a second factor verified within `freshFor`, as TOTP enrolment does.
   */
  startPasskeyRegistration: (request: FastifyRequest, reply: FastifyReply, options?: { userName?: string | undefined }) => Promise<PasskeyCreationOptions>
  /** Verifies the browser's answer and stores the passkey under `name`; ends the user's other sessions, as any change of factor. */
  finishPasskeyRegistration: (request: FastifyRequest, reply: FastifyReply, response: unknown, options?: { name?: string | undefined }) => Promise<PasskeyInfo>
  /**
   * Options for `navigator.credentials.get`. The ceremony follows the session: a pending session (after
   * the password) gets a second factor, an active one a step-up, none a passwordless sign-in.
   */
  startPasskeyAuthentication: (request: FastifyRequest, reply: FastifyReply) => Promise<PasskeyRequestOptions>
  /** Verifies an assertion for the ceremony this session started, and signs in or refreshes mfaVerifiedAt. */
  finishPasskeyAuthentication: (request: FastifyRequest, reply: FastifyReply, response: unknown, options?: { remember?: boolean | undefined }) => Promise<PasskeyAuthResult>
  /** The signed-in user's passkeys, without their keys. */
  listPasskeys: (request: FastifyRequest) => Promise<PasskeyInfo[]>
  /** Removes one passkey; needs a second factor verified within `freshFor`, also for the last factor. */
  removePasskey: (request: FastifyRequest, id: string) => Promise<void>
}

declare module '../session/index.js' {
  interface XemsSessionData {
    /** When this session last verified a second factor (ms since the epoch). Set by xemsMfa. */
    mfaVerifiedAt?: number | undefined
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    xemsMfa: XemsMfa
  }
}

/** Internal keys live in their own sandbox, apart from application data. */
const MFA_SANDBOX = 'xems-mfa'
const DEVICE_SANDBOX = 'xems-devices'
const FIFTEEN_MINUTES = 15 * 60_000
const ONE_HOUR = 60 * 60_000
/** Pending-session key: the passkey that served as the first factor (it cannot be the second too). */
const PASSKEY_FIRST_FACTOR = 'xemsPasskeyFirstFactor'
/** Longest login name accepted: enough for any email address (254), far below the store's key limit. */
export const MAX_LOGIN_NAME_LENGTH = 256

/** A guess the lockout counted and let through (internal, shared with the passkey ceremonies). */
export interface Admitted { inWindow: number, consecutive: number | null, resetAt: number }

function checkWhole (value: unknown, option: string, min: number, max: number, fallback: number): number {
  const n = value ?? fallback
  if (!Number.isSafeInteger(n) || (n as number) < min || (n as number) > max) throw badOption(option, `must be a whole number from ${min} to ${max}`)
  return n as number
}

async function xemsMfaPlugin (fastify: FastifyInstance, options: XemsMfaOptions): Promise<void> {
  const engine: XemsDecorator = fastify.xems
  if (typeof options.issuer !== 'string' || options.issuer.length === 0 || options.issuer.length > 100 || options.issuer.includes(':')) {
    throw badOption('issuer', 'must be a name of 1 to 100 characters without ":" (it is shown in authenticator apps)')
  }
  const users = options.users
  if (users === null || typeof users !== 'object' || typeof users.load !== 'function' || typeof users.save !== 'function') {
    throw badOption('users', 'must be { load(userId), save(userId, record) }: where the application keeps each user\'s MFA record')
  }
  const pendingSandbox = checkSandbox(options.pendingSandbox ?? 'otp-pending', 'pendingSandbox')
  const activeSandbox = checkSandbox(options.activeSandbox ?? engine.defaultSandbox, 'activeSandbox')
  if (pendingSandbox === activeSandbox) throw badOption('pendingSandbox', 'must differ from activeSandbox')
  const pendingTtl = parsePositiveDuration(options.pendingTtl ?? '15m', 'pendingTtl')
  if (pendingTtl > FIFTEEN_MINUTES) throw badOption('pendingTtl', 'must be at most 15 minutes: a half-authenticated session must not linger')
  const window = checkWhole(options.window, 'window', 0, 10, 1)
  const maxAttempts = checkWhole(options.maxAttempts, 'maxAttempts', 1, 10, 5)
  const maxFailures = checkWhole(options.lockout?.maxFailures, 'lockout.maxFailures', 1, 10, 10)
  const lockWindow = parsePositiveDuration(options.lockout?.window ?? '15m', 'lockout.window')
  if (lockWindow > MAX_AGE_CAP_MS) throw badOption('lockout.window', 'must be at most 5 days')
  const maxConsecutive = checkWhole(options.lockout?.maxConsecutive, 'lockout.maxConsecutive', maxFailures, 100, 100)
  const recoveryCount = checkWhole(options.recoveryCodes, 'recoveryCodes', 1, 20, 10)
  const totpParams = {
    algorithm: options.totp?.algorithm ?? 'SHA1',
    digits: checkWhole(options.totp?.digits, 'totp.digits', 6, 8, 6),
    period: checkWhole(options.totp?.period, 'totp.period', 15, 120, 30)
  } as const
  if (!['SHA1', 'SHA256', 'SHA512'].includes(totpParams.algorithm)) throw badOption('totp.algorithm', "must be 'SHA1', 'SHA256' or 'SHA512'")
  const remember = options.rememberDevice === undefined || options.rememberDevice === false
    ? null
    : {
        ttl: parsePositiveDuration(options.rememberDevice.ttl ?? '5d', 'rememberDevice.ttl'),
        cookieName: options.rememberDevice.cookieName ?? 'xems_device',
        secure: options.rememberDevice.secure ?? true
      }
  if (remember !== null && remember.ttl > MAX_AGE_CAP_MS) throw badOption('rememberDevice.ttl', 'must be at most 5 days: nothing lives longer')
  if (remember !== null && !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$/.test(remember.cookieName)) throw badOption('rememberDevice.cookieName', 'must be a cookie name')
  const argon2 = options.argon2
  const freshFor = parsePositiveDuration(options.freshFor ?? '10m', 'freshFor')
  if (freshFor > ONE_HOUR) throw badOption('freshFor', 'must be at most 1 hour: a change of factor needs a recent second factor')
  // Names that are no account are logged as a keyed digest: a password typed into the name field
  // never reaches the logs, and the key (new for every process) keeps the digest from being reversed.
  const nameKey = randomBytes(32)

  const mfaState = engine.from(MFA_SANDBOX)
  const devices = engine.from(DEVICE_SANDBOX)

  // ---- lockout ----------------------------------------------------------------------------
  //
  // Every guess is counted before it is evaluated, with one atomic increment per counter (engine.hit),
  // and evaluated only when the count it got is within the limit: of any number of parallel guesses,
  // on one process or many on one Redis, at most maxFailures per window reach argon2 or TOTP. The
  // counters are the lock: nothing is written after the guess, so nothing can fail to be written.

  const windowKey = (userId: string): string => `xems-mfa:window:${userId}`
  const consecutiveKey = (userId: string): string => `xems-mfa:consecutive:${userId}`
  const lockKey = (userId: string): string => `locked:${userId}`

  function lockedError (resetAt: number): XemsError {
    const retryAfter = Math.max(1, Math.ceil((resetAt - engine.now()) / 1000))
    return xemsError('FST_XEMS_MFA_LOCKED', [], { retryAfter })
  }

  /**
   * Counts one guess for `userId` and answers whether it may be evaluated (429 when not). `known`:
   * the name is an account; only accounts get the 5-day consecutive counter, so a client spraying
   * names leaves nothing that outlives `lockout.window`.
   */
  async function admit (userId: string, known: boolean, log: FastifyBaseLogger, reply?: FastifyReply): Promise<Admitted> {
    const inWindow = await engine.hit(windowKey(userId), lockWindow)
    if (inWindow.count > maxFailures) {
      if (inWindow.count === maxFailures + 1) {
        log.warn({ xems: 'user-locked', ...who(userId, known), until: inWindow.resetAt, reason: 'window' }, 'xems: user throttled')
        if (known) lockoutEvent(userId, inWindow.resetAt)
        await mark(userId, known, inWindow.resetAt, log)
      }
      throw refuse(lockedError(inWindow.resetAt), reply)
    }
    if (!known) return { inWindow: inWindow.count, consecutive: null, resetAt: inWindow.resetAt }
    const consecutive = await engine.hit(consecutiveKey(userId), MAX_AGE_CAP_MS)
    if (consecutive.count > maxConsecutive) {
      if (consecutive.count === maxConsecutive + 1) {
        log.warn({ xems: 'user-locked', ...who(userId, known), until: consecutive.resetAt, reason: 'consecutive' }, 'xems: user locked after too many consecutive failures')
        lockoutEvent(userId, consecutive.resetAt)
      }
      // Once per window at most: the marker may be shorter-lived (maxAge) than the lock itself.
      if (consecutive.count === maxConsecutive + 1 || inWindow.count === 1) await mark(userId, known, consecutive.resetAt, log)
      throw refuse(lockedError(consecutive.resetAt), reply)
    }
    return { inWindow: inWindow.count, consecutive: consecutive.count, resetAt: inWindow.resetAt }
  }

  /** The lockout security event, once per lock (the guess that crossed the limit), for accounts only. */
  function lockoutEvent (userId: string, until: number): void {
    engine.security({ type: 'lockout', at: engine.now(), userId, retryAfter: Math.max(1, Math.ceil((until - engine.now()) / 1000)) })
  }

  function refuse (err: XemsError, reply?: FastifyReply): XemsError {
    reply?.header('retry-after', String(err.retryAfter))
    return err
  }

  /** After an evaluated guess failed: the log line, and the advisory marker once the budget is spent. */
  async function failed (userId: string, known: boolean, factor: string, admitted: Admitted, log: FastifyBaseLogger): Promise<void> {
    log.warn({ xems: 'auth-failure', factor, ...who(userId, known), failures: admitted.inWindow }, 'xems: authentication failure')
    if (admitted.consecutive !== null && admitted.consecutive >= maxConsecutive) await mark(userId, known, engine.now() + MAX_AGE_CAP_MS, log)
    else if (admitted.inWindow >= maxFailures) await mark(userId, known, admitted.resetAt, log)
  }

  /** The advisory marker that assertNotLocked reads; written only when a budget runs out, never fails the request. */
  async function mark (userId: string, known: boolean, until: number, log: FastifyBaseLogger): Promise<void> {
    try {
      // The lifetime is computed now, after the store calls, and capped: it can never exceed maxAge.
      const ttl = Math.min(engine.maxAge, Math.max(1, until - engine.now()))
      await mfaState.set(lockKey(userId), engine.now() + ttl, ttl)
    } catch (err) {
      // Only the early answer of assertNotLocked depends on it; the counters already hold the lock.
      log.warn({ xems: 'lock-marker-failed', ...who(userId, known), err: { code: (err as { code?: unknown }).code } }, 'xems: the lock marker could not be written')
    }
  }

  function who (userId: string, known: boolean): { userId: string } | { userHash: string } {
    return known ? { userId } : { userHash: createHmac('sha256', nameKey).update(userId).digest('base64url').slice(0, 16) }
  }

  async function assertNotLocked (userId: string, reply?: FastifyReply): Promise<void> {
    const until = await mfaState.get<number>(lockKey(userId))
    if (until === null || until <= engine.now()) return
    throw refuse(lockedError(until), reply)
  }

  async function recordSuccess (userId: string): Promise<void> {
    await engine.resetCounter(windowKey(userId))
    await engine.resetCounter(consecutiveKey(userId))
    await mfaState.del(lockKey(userId))
  }

  function checkCredentialsInput (userId: unknown, password: unknown): void {
    const nameOk = userId === null || (typeof userId === 'string' && userId.length > 0 && userId.length <= MAX_LOGIN_NAME_LENGTH)
    const passwordOk = typeof password === 'string' && password.length > 0 && password.length <= MAX_PASSWORD_LENGTH
    if (!nameOk || !passwordOk) {
      throw xemsError('FST_XEMS_MFA_BAD_INPUT', [MAX_LOGIN_NAME_LENGTH, MAX_PASSWORD_LENGTH])
    }
  }

  // ---- second factors ------------------------------------------------------------------------

  /** Checks a code for a user: TOTP (each step once, never an older step) or a recovery code (each once). */
  async function checkCode (userId: string, code: unknown, log: FastifyBaseLogger): Promise<VerifyResult | null> {
    const record = await users.load(userId)
    if (typeof code === 'string' && /^\d{6,8}$/.test(code)) {
      const totp = record?.totp
      if (totp === undefined || totp === null) return null
      const lastStep = await mfaState.get<number>(`last-step:${userId}`)
      const period = totp.period ?? 30
      const result = await verifyTotp({
        secret: totp.secret,
        token: code,
        window,
        at: engine.now(),
        period,
        ...(totp.algorithm === undefined ? {} : { algorithm: totp.algorithm }),
        ...(totp.digits === undefined ? {} : { digits: totp.digits }),
        ...(lastStep === null ? {} : { afterStep: lastStep })
      })
      if (!result.valid || result.step === null) {
        if (lastStep !== null && await isReplay(userId, code, totp, lastStep)) log.warn({ xems: 'totp-replay', userId }, 'xems: a TOTP code of an already used step was replayed')
        return null
      }
      return await claimStep(userId, result.step, period, log) ? { method: 'totp' } : null
    }
    const hashes = record?.recoveryCodes ?? []
    if (normalizeRecoveryCode(code) === null || hashes.length === 0) return null
    const index = await findRecoveryCode(hashes, code)
    if (index < 0) return null
    // Of parallel requests with the same code, exactly one claims it.
    // The claim is keyed by the code's own hash (a random salt each), so it dies with the code: codes
    // issued later, at the same position, are new codes.
    if (!await mfaState.add(`recovery-used:${userId}:${sha('sha256', hashes[index]!).toString('base64url')}`, true, MAX_AGE_CAP_MS)) {
      log.warn({ xems: 'recovery-replay', userId }, 'xems: a used recovery code was replayed')
      return null
    }
    const fresh = await users.load(userId) ?? {}
    const codes = [...(fresh.recoveryCodes ?? hashes)]
    codes[index] = null
    await users.save(userId, { ...fresh, recoveryCodes: codes })
    return { method: 'recovery', recoveryCodesLeft: codes.filter((hash) => hash !== null).length }
  }

  /** Accepts a step once per user, also across processes: the claim is an atomic add in the store. */
  async function claimStep (userId: string, step: number, period: number, log: FastifyBaseLogger): Promise<boolean> {
    const keep = (2 * window + 2) * period * 1000
    if (!await mfaState.add(`step:${userId}:${step}`, true, keep)) {
      log.warn({ xems: 'totp-replay', userId }, 'xems: a TOTP code of an already used step was replayed')
      return false
    }
    const last = await mfaState.get<number>(`last-step:${userId}`)
    if (last === null || step > last) await mfaState.set(`last-step:${userId}`, step, MAX_AGE_CAP_MS)
    return true
  }

  async function isReplay (_userId: string, code: string, totp: NonNullable<MfaRecord['totp']>, lastStep: number): Promise<boolean> {
    const again = await verifyTotp({
      secret: totp.secret,
      token: code,
      window,
      at: engine.now(),
      ...(totp.period === undefined ? {} : { period: totp.period }),
      ...(totp.algorithm === undefined ? {} : { algorithm: totp.algorithm }),
      ...(totp.digits === undefined ? {} : { digits: totp.digits })
    })
    return again.valid && again.step !== null && again.step <= lastStep
  }

  // ---- remembered devices --------------------------------------------------------------------

  async function rememberedFor (request: FastifyRequest, userId: string): Promise<boolean> {
    if (remember === null) return false
    // Raw, as for the session cookie: no percent-decoding, and two different values count as none.
    const raw = readRawCookie(request.headers.cookie, remember.cookieName)
    const token = raw.status === 'one' ? raw.value : undefined
    if (!isWellFormedToken(token)) return false
    const device = await devices.get<{ userId: string, createdAt: number }>(tokenKey(token))
    if (device === null || device.userId !== userId) return false
    const revokedAt = await devices.get<number>(`revoked:${userId}`)
    return revokedAt === null || device.createdAt > revokedAt
  }

  async function rememberDevice (reply: FastifyReply, userId: string): Promise<void> {
    if (remember === null) return
    const token = generateToken()
    await devices.set(tokenKey(token), { userId, createdAt: engine.now() }, remember.ttl)
    reply.setCookie(remember.cookieName, token, { httpOnly: true, secure: remember.secure, sameSite: 'strict', path: '/', maxAge: Math.floor(remember.ttl / 1000) })
  }

  async function forgetDevices (userId: string): Promise<void> {
    // Every device remembered before now stops counting: no list to keep, nothing to race with.
    await devices.set(`revoked:${userId}`, engine.now(), MAX_AGE_CAP_MS)
  }

  // ---- the flow ------------------------------------------------------------------------------

  function activeSessionOf (request: FastifyRequest): { userId: string } {
    const session = request.session
    if (session === null || session.destroyed || session.sandbox !== activeSandbox || session.userId === undefined) {
      throw xemsError('FST_XEMS_NO_SESSION')
    }
    return { userId: session.userId }
  }

  /**
   * Counts one second-factor attempt on a pending session (code or passkey alike) and refuses past
   * `maxAttempts`. The counter outlives the pending session, so once spent the session is a dead end:
   * the user signs in again. It is not destroyed here: a concurrent request may just have promoted it.
   */
  async function countPendingAttempt (sessionId: string): Promise<number> {
    const attempts = await engine.hit(`xems-mfa:attempts:${sessionId}`, pendingTtl)
    if (attempts.count > maxAttempts) {
      throw xemsError('FST_XEMS_MFA_ATTEMPTS')
    }
    return attempts.count
  }

  /** A pending session's data as the active session gets it: nothing that claims a verification. */
  function carriedData (data: Record<string, unknown>): Record<string, unknown> {
    const { mfaVerifiedAt: _ignored, [PASSKEY_FIRST_FACTOR]: _first, ...carried } = data
    return carried
  }

  /** Moves the pending session to the active sandbox; of concurrent promotions of one session exactly one wins (the others get 401 FST_XEMS_NO_SESSION). */
  async function promote (request: FastifyRequest, data: Record<string, unknown>, userId: string, signIn: 'totp' | 'recovery-code' | 'passkey'): Promise<void> {
    await request.session!.migrate(activeSandbox, { data: { ...data, mfaVerifiedAt: engine.now() }, userId, signIn })
  }

  /** 401 FST_XEMS_MFA_REQUIRED unless this session verified a second factor within `limit`. */
  function assertFresh (request: FastifyRequest, limit: number): void {
    const at = request.session!.data.mfaVerifiedAt
    const now = engine.now()
    if (typeof at !== 'number' || at > now || now - at > limit) {
      throw xemsError('FST_XEMS_MFA_REQUIRED')
    }
  }

  const isEnrolled = (record: MfaRecord | null): boolean => record?.totp !== undefined && record?.totp !== null
  /** Any second factor: TOTP or a passkey. */
  const hasFactor = (record: MfaRecord | null): boolean => isEnrolled(record) || (record?.passkeys?.length ?? 0) > 0
  const methodsOf = (record: MfaRecord | null): Array<'totp' | 'passkey'> => [
    ...(isEnrolled(record) ? ['totp' as const] : []),
    ...(passkeys !== null && (record?.passkeys?.length ?? 0) > 0 ? ['passkey' as const] : [])
  ]

  const mfa: XemsMfa = {
    async verifyPassword (userId, password, hash, request) {
      const log = request?.log ?? fastify.log
      checkCredentialsInput(userId, password)
      if (userId === null) return await verifyArgon2(null, password, argon2)
      // Failures count for any login name, known or not: a lock does not reveal that an account exists.
      const known = typeof hash === 'string'
      const admitted = await admit(userId, known, log)
      const ok = await verifyArgon2(hash, password, argon2)
      if (!ok) await failed(userId, known, 'password', admitted, log)
      return ok
    },

    assertNotLocked,

    async unlock (userId) {
      await recordSuccess(userId)
    },

    async begin (request, reply, { userId, data = {} }) {
      // No lock check here: the password guess that led here was admitted by verifyPassword.
      const record = await users.load(userId)
      const methods = methodsOf(record)
      const enrolled = methods.length > 0
      // Only a verified second factor makes a session fresh: never data handed in, never a device.
      const { mfaVerifiedAt: _ignored, ...carried } = data as Record<string, unknown>
      if (!enrolled || await rememberedFor(request, userId)) {
        await reply.xLink(carried, { sandbox: activeSandbox, userId, signIn: enrolled ? 'remembered-device' : 'password' })
        await recordSuccess(userId)
        return { next: 'active', enrolled, remembered: enrolled }
      }
      await reply.xLink(carried, { sandbox: pendingSandbox, userId, ttl: pendingTtl, signIn: 'password' })
      // Without passkeys configured the answer is what it always was: { next: 'totp', ... }.
      return { next: methods[0]!, ...(passkeys === null ? {} : { methods }), enrolled, remembered: false }
    },

    async verify (request, reply, code, verifyOptions = {}) {
      const session = request.session
      if (session === null || session.destroyed || session.sandbox !== pendingSandbox || session.userId === undefined) {
        throw xemsError('FST_XEMS_MFA_NOT_PENDING')
      }
      const userId = session.userId
      const attempts = await countPendingAttempt(session.id)
      const admitted = await admit(userId, true, request.log, reply)
      const result = await checkCode(userId, code, request.log)
      if (result === null) {
        await failed(userId, true, 'second-factor', admitted, request.log)
        const left = maxAttempts - attempts
        throw xemsError('FST_XEMS_MFA_INVALID', [Math.max(0, left)])
      }
      await recordSuccess(userId)
      await promote(request, carriedData(session.data), userId, result.method === 'totp' ? 'totp' : 'recovery-code')
      if (verifyOptions.remember === true) await rememberDevice(reply, userId)
      return result
    },

    async startEnrolment (request, enrolOptions = {}) {
      const { userId } = activeSessionOf(request)
      if (hasFactor(await users.load(userId))) assertFresh(request, freshFor)
      const secret = generateTotpSecret()
      await mfaState.set(`enrol:${userId}`, secret, FIFTEEN_MINUTES)
      const label = enrolOptions.label ?? userId
      const uri = totpUri({ secret, label, issuer: options.issuer, ...totpParams })
      return { secret, uri, qrSvg: renderSVG(uri) }
    },

    async confirmEnrolment (request, code) {
      const { userId } = activeSessionOf(request)
      const secret = await mfaState.get<string>(`enrol:${userId}`)
      if (secret === null) throw xemsError('FST_XEMS_MFA_NO_ENROLMENT')
      // Replacing a factor needs the current one, verified recently, at confirmation too.
      if (hasFactor(await users.load(userId))) assertFresh(request, freshFor)
      const admitted = await admit(userId, true, request.log)
      const result = typeof code === 'string'
        ? await verifyTotp({ secret, token: code, window, at: engine.now(), ...totpParams })
        : { valid: false, step: null }
      if (!result.valid || result.step === null || !await claimStep(userId, result.step, totpParams.period, request.log)) {
        await failed(userId, true, 'enrolment', admitted, request.log)
        throw xemsError('FST_XEMS_MFA_WRONG')
      }
      if (await mfaState.take(`enrol:${userId}`) === null) throw xemsError('FST_XEMS_MFA_ENROLMENT_CONFIRMED')
      const recoveryCodes = generateRecoveryCodes(recoveryCount)
      const record = await users.load(userId) ?? {}
      await users.save(userId, {
        ...record,
        totp: { secret, ...totpParams, enrolledAt: engine.now() },
        recoveryCodes: await hashRecoveryCodes(recoveryCodes, argon2)
      })
      await recordSuccess(userId)
      await afterFactorChange(request, userId)
      request.log.info({ xems: 'mfa-enrolled', userId }, 'xems: TOTP enrolled')
      engine.security({ type: 'factor-enrolled', at: engine.now(), userId, factor: 'totp' })
      return { recoveryCodes }
    },

    async stepUp (request, reply, code) {
      const { userId } = activeSessionOf(request)
      const admitted = await admit(userId, true, request.log, reply)
      const result = await checkCode(userId, code, request.log)
      if (result === null) {
        await failed(userId, true, 'step-up', admitted, request.log)
        throw xemsError('FST_XEMS_MFA_WRONG')
      }
      await recordSuccess(userId)
      request.session!.data.mfaVerifiedAt = engine.now()
      return result
    },

    async disable (request) {
      const { userId } = activeSessionOf(request)
      const record = await users.load(userId)
      if (hasFactor(record)) assertFresh(request, freshFor)
      await users.save(userId, { ...(record ?? {}), totp: null, recoveryCodes: [], ...(record?.passkeys === undefined ? {} : { passkeys: [] }) })
      await afterFactorChange(request, userId)
      request.log.info({ xems: 'mfa-disabled', userId }, 'xems: second factor removed')
      if (isEnrolled(record)) engine.security({ type: 'factor-removed', at: engine.now(), userId, factor: 'totp' })
      if ((record?.passkeys?.length ?? 0) > 0) engine.security({ type: 'factor-removed', at: engine.now(), userId, factor: 'passkey' })
    },

    async regenerateRecoveryCodes (request) {
      const { userId } = activeSessionOf(request)
      const record = await users.load(userId)
      if (record === null || !isEnrolled(record)) throw xemsError('FST_XEMS_MFA_NOT_ENROLLED')
      assertFresh(request, freshFor)
      const codes = generateRecoveryCodes(recoveryCount)
      await users.save(userId, { ...record, recoveryCodes: await hashRecoveryCodes(codes, argon2) })
      request.log.info({ xems: 'recovery-codes-regenerated', userId }, 'xems: recovery codes replaced')
      engine.security({ type: 'recovery-codes-regenerated', at: engine.now(), userId })
      return codes
    },

    requireFreshMfa (maxAge) {
      const limit = parsePositiveDuration(maxAge, 'requireFreshMfa(maxAge)')
      return async function xemsFreshMfaGuard (request: FastifyRequest): Promise<void> {
        activeSessionOf(request)
        assertFresh(request, limit)
      }
    },

    async revokeUser (userId, revokeOptions = {}) {
      await forgetDevices(userId)
      return await engine.revokeUser(userId, revokeOptions)
    },

    startPasskeyRegistration: async (request, reply, o) => await passkeyApi().startPasskeyRegistration(request, reply, o),
    finishPasskeyRegistration: async (request, reply, response, o) => await passkeyApi().finishPasskeyRegistration(request, reply, response, o),
    startPasskeyAuthentication: async (request, reply) => await passkeyApi().startPasskeyAuthentication(request, reply),
    finishPasskeyAuthentication: async (request, reply, response, o) => await passkeyApi().finishPasskeyAuthentication(request, reply, response, o),
    listPasskeys: async (request) => await passkeyApi().listPasskeys(request),
    removePasskey: async (request, id) => await passkeyApi().removePasskey(request, id)
  }

  // Passkeys load @simplewebauthn/server only when configured: apps without them never load it.
  const core: MfaCore = {
    engine,
    users,
    pendingSandbox,
    activeSandbox,
    freshFor,
    admit,
    failed,
    recordSuccess,
    countPendingAttempt,
    carriedData,
    promote,
    assertFresh,
    activeSessionOf,
    afterFactorChange,
    hasFactor,
    methodsOf,
    rememberDevice,
    firstFactorKey: PASSKEY_FIRST_FACTOR
  }
  const passkeys: PasskeyApi | null = options.passkeys === undefined
    ? null
    : (await import('./passkeys.js')).createPasskeys(core, options.passkeys)
  function passkeyApi (): PasskeyApi {
    if (passkeys === null) throw badOption('passkeys', 'must be set (to { rpId, rpName, origins }) to use the passkey ceremonies')
    return passkeys
  }

  /**
   * After a change of factors: other sessions and remembered devices end; this session gets a new
   * token, and its second factor is no longer fresh (it was verified with the factor that changed, or
   * with none): the next sensitive step asks for a code of the new factor.
   */
  async function afterFactorChange (request: FastifyRequest, userId: string): Promise<void> {
    const session = request.session!
    await mfa.revokeUser(userId, { except: session.id })
    await session.regenerate()
    delete session.data.mfaVerifiedAt
  }

  fastify.decorate('xemsMfa', mfa)
}

/**
 * Password → TOTP login helpers for the routes of one context: register it next to the login routes,
 * after xemsSession (on the same instance or a parent).
 */
// xemsMfa keeps its state in the session store: Fastify refuses it at register without xemsSession on this instance or a parent.
export const xemsMfa = fp(xemsMfaPlugin, { name: 'xems-mfa', fastify: '5.x', dependencies: ['xems-session'] })
