/**
 * xemsMfa's options: their types, and the checks that turn them into the settings the parts use
 * (every value bounded, every default filled in) before anything is registered.
 */
import { parsePositiveDuration, type Duration } from '../../lib/duration.js'
import { badOption } from '../../lib/errors.js'
import type { PasswordHashOptions } from '../../lib/mfa/password.js'
import type { PasskeyOptions } from '../../lib/mfa/passkey.js'
import type { TotpAlgorithm } from '../../lib/mfa/totp.js'
import { checkSandbox, MAX_AGE_CAP_MS } from '../../lib/session/engine.js'
import type { MfaUserAdapter } from './types.js'

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

export const FIFTEEN_MINUTES = 15 * 60_000
const ONE_HOUR = 60 * 60_000

/** The checked options, as the parts of the plugin read them. */
export interface MfaSettings {
  issuer: string
  users: MfaUserAdapter
  pendingSandbox: string
  activeSandbox: string
  pendingTtl: number
  window: number
  maxAttempts: number
  maxFailures: number
  lockWindow: number
  maxConsecutive: number
  recoveryCount: number
  totpParams: { readonly algorithm: TotpAlgorithm, readonly digits: number, readonly period: number }
  remember: { ttl: number, cookieName: string, secure: boolean } | null
  argon2: PasswordHashOptions | undefined
  freshFor: number
  passkeys: PasskeyOptions | undefined
}

function checkWhole (value: unknown, option: string, min: number, max: number, fallback: number): number {
  const n = value ?? fallback
  if (!Number.isSafeInteger(n) || (n as number) < min || (n as number) > max) {
    throw badOption(option, `must be a whole number from ${min} to ${max}`)
  }
  return n as number
}

/** Checks the options (FST_XEMS_BAD_OPTION on the first wrong one); `defaultSandbox` is the session plugin's. */
export function checkOptions (options: XemsMfaOptions, defaultSandbox: string): MfaSettings {
  if (typeof options.issuer !== 'string' || options.issuer.length === 0 || options.issuer.length > 100 || options.issuer.includes(':')) {
    throw badOption('issuer', 'must be a name of 1 to 100 characters without ":" (it is shown in authenticator apps)')
  }
  const users = options.users
  if (users === null || typeof users !== 'object' || typeof users.load !== 'function' || typeof users.save !== 'function') {
    throw badOption('users', 'must be { load(userId), save(userId, record) }: where the application keeps each user\'s MFA record')
  }
  const pendingSandbox = checkSandbox(options.pendingSandbox ?? 'otp-pending', 'pendingSandbox')
  const activeSandbox = checkSandbox(options.activeSandbox ?? defaultSandbox, 'activeSandbox')
  if (pendingSandbox === activeSandbox) throw badOption('pendingSandbox', 'must differ from activeSandbox')
  const pendingTtl = parsePositiveDuration(options.pendingTtl ?? '15m', 'pendingTtl')
  if (pendingTtl > FIFTEEN_MINUTES) {
    throw badOption('pendingTtl', 'must be at most 15 minutes: a half-authenticated session must not linger')
  }
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
  if (!['SHA1', 'SHA256', 'SHA512'].includes(totpParams.algorithm)) {
    throw badOption('totp.algorithm', "must be 'SHA1', 'SHA256' or 'SHA512'")
  }
  const remember = options.rememberDevice === undefined || options.rememberDevice === false
    ? null
    : {
        ttl: parsePositiveDuration(options.rememberDevice.ttl ?? '5d', 'rememberDevice.ttl'),
        cookieName: options.rememberDevice.cookieName ?? 'xems_device',
        secure: options.rememberDevice.secure ?? true
      }
  if (remember !== null && remember.ttl > MAX_AGE_CAP_MS) {
    throw badOption('rememberDevice.ttl', 'must be at most 5 days: nothing lives longer')
  }
  if (remember !== null && !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$/.test(remember.cookieName)) {
    throw badOption('rememberDevice.cookieName', 'must be a cookie name')
  }
  const argon2 = options.argon2
  const freshFor = parsePositiveDuration(options.freshFor ?? '10m', 'freshFor')
  if (freshFor > ONE_HOUR) throw badOption('freshFor', 'must be at most 1 hour: a change of factor needs a recent second factor')
  return {
    issuer: options.issuer,
    users,
    pendingSandbox,
    activeSandbox,
    pendingTtl,
    window,
    maxAttempts,
    maxFailures,
    lockWindow,
    maxConsecutive,
    recoveryCount,
    totpParams,
    remember,
    argon2,
    freshFor,
    passkeys: options.passkeys
  }
}
