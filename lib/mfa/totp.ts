import { timingSafeEqual } from 'node:crypto'
import { generate, generateSecret, NobleCryptoPlugin, ScureBase32Plugin, type HashAlgorithm } from 'otplib'
import { badOption, xemsError } from '../errors.js'

/**
 * TOTP (RFC 6238) enrolment and verification on otplib v13.
 *
 * otplib computes the codes (HOTP dynamic truncation over HMAC-SHA1/256/512, audited @noble/hashes)
 * and generates secrets; this module fixes the policy around it: secrets of at least 160 bits, strict
 * token syntax, a bounded drift window, a replay guard (`afterStep`) and a constant-time comparison.
 *
 * Times are server times in milliseconds since the epoch (`at`, default `Date.now()`); a "step" is
 * the RFC 6238 time-step counter T = floor(unixSeconds / period). The caller stores the step of the
 * last accepted code per user and passes it back as `afterStep`, so each code is accepted once.
 * All functions that compute a code are async, as otplib's are.
 */

export type TotpAlgorithm = 'SHA1' | 'SHA256' | 'SHA512'

/** Code parameters; they must match what the authenticator app was given in the URI. */
export interface TotpParameters {
  /** Digits in a code, 6 to 8. Default 6 (what every authenticator app supports). */
  digits?: number | undefined
  /** Seconds per step, 15 to 120. Default 30. */
  period?: number | undefined
  /** HMAC hash. Default 'SHA1' (the only one some authenticator apps support). */
  algorithm?: TotpAlgorithm | undefined
}

export interface TotpUriOptions extends TotpParameters {
  /** Base32 secret, as returned by `generateTotpSecret`. */
  secret: string
  /** Account name shown in the app, e.g. the user's email. No colon (Key Uri Format). */
  label: string
  /** Service name shown in the app. No colon (Key Uri Format). */
  issuer: string
}

export interface TotpGenerateOptions extends TotpParameters {
  /** Base32 secret, as returned by `generateTotpSecret`. */
  secret: string
  /** Time in ms since the epoch. Default `Date.now()`. */
  at?: number | undefined
}

export interface TotpVerifyOptions extends TotpGenerateOptions {
  /** The code the user typed. */
  token: string
  /** Steps of clock drift accepted on either side of the current one, 0 to 10. Default 1. */
  window?: number | undefined
  /**
   * Replay guard: only steps strictly greater than this are accepted. Pass the `step` of the last
   * code accepted for this user (null or undefined when there is none yet).
   */
  afterStep?: number | null | undefined
}

export interface TotpVerifyResult {
  valid: boolean
  /** The accepted step (store it and pass it as the next `afterStep`); null when not valid. */
  step: number | null
}

/** Fewest secret bytes accepted: 160 bits, as RFC 4226 §4 recommends (it requires 128). */
export const TOTP_SECRET_MIN_BYTES = 20
/** Most secret bytes accepted: otplib's own ceiling (its MAX_SECRET_BYTES guardrail). */
export const TOTP_SECRET_MAX_BYTES = 64
/** Widest drift window, in steps on each side. */
export const TOTP_MAX_WINDOW = 10

const DIGITS = { min: 6, max: 8, default: 6 }
const PERIOD = { min: 15, max: 120, default: 30 }
const DEFAULT_WINDOW = 1
const ALGORITHMS: Readonly<Record<TotpAlgorithm, HashAlgorithm>> = Object.freeze({
  SHA1: 'sha1',
  SHA256: 'sha256',
  SHA512: 'sha512'
})
// Canonical RFC 4648 base32 as generateTotpSecret writes it: upper case, no padding.
const SECRET_SYNTAX = /^[A-Z2-7]+$/
const LABEL_MAX_LENGTH = 256
// Characters refused in an issuer or label: the colon separates them in the URI label, and control
// characters have no business in a name shown on a phone.
const LABEL_FORBIDDEN = /[:\u0000-\u001f\u007f]/

const cryptoPlugin = new NobleCryptoPlugin()
const base32Plugin = new ScureBase32Plugin()

const INVALID: Readonly<TotpVerifyResult> = Object.freeze({ valid: false, step: null })

interface ResolvedParameters {
  digits: number
  period: number
  algorithm: TotpAlgorithm
}

/** Checks digits, period and algorithm; a bad one fails with FST_XEMS_BAD_OPTION naming it. */
function resolveParameters (options: TotpParameters): ResolvedParameters {
  const { digits = DIGITS.default, period = PERIOD.default, algorithm = 'SHA1' } = options
  if (!Number.isInteger(digits) || digits < DIGITS.min || digits > DIGITS.max) {
    throw badOption('digits', `must be an integer from ${DIGITS.min} to ${DIGITS.max}`)
  }
  if (!Number.isInteger(period) || period < PERIOD.min || period > PERIOD.max) {
    throw badOption('period', `must be an integer number of seconds from ${PERIOD.min} to ${PERIOD.max}`)
  }
  if (!Object.hasOwn(ALGORITHMS, algorithm)) {
    throw badOption('algorithm', `must be one of ${Object.keys(ALGORITHMS).join(', ')}`)
  }
  return { digits, period, algorithm }
}

/**
 * Decodes a base32 secret to its bytes. A secret that is not canonical base32 of 20 to 64 bytes
 * fails with FST_XEMS_BAD_SECRET (a stored secret is server state: a bad one is a bug, not a client
 * error). The message never contains the secret.
 */
function decodeSecret (secret: unknown): Uint8Array {
  let bytes: Uint8Array | undefined
  if (typeof secret === 'string' && secret.length <= 2 * TOTP_SECRET_MAX_BYTES && SECRET_SYNTAX.test(secret)) {
    try {
      bytes = base32Plugin.decode(secret)
    } catch {
      // Impossible length or non-zero trailing bits: not a canonical encoding.
    }
  }
  if (bytes === undefined || bytes.length < TOTP_SECRET_MIN_BYTES || bytes.length > TOTP_SECRET_MAX_BYTES) {
    throw xemsError('FST_XEMS_BAD_TOTP_SECRET', [TOTP_SECRET_MIN_BYTES, TOTP_SECRET_MAX_BYTES])
  }
  return bytes
}

/** The RFC 6238 step containing time `at` (ms since the epoch, default now). */
function stepAt (at: number | undefined, period: number): number {
  const time = at ?? Date.now()
  if (!Number.isFinite(time) || time < 0) {
    throw badOption('at', 'must be a time in milliseconds since the epoch, not negative')
  }
  return Math.floor(Math.floor(time / 1000) / period)
}

/** The code of one step, computed by otplib. */
async function codeAt (key: Uint8Array, step: number, parameters: ResolvedParameters): Promise<string> {
  return await generate({
    secret: key,
    // otplib counts time in whole seconds: the first second of the step gives exactly that step.
    epoch: step * parameters.period,
    period: parameters.period,
    digits: parameters.digits,
    algorithm: ALGORITHMS[parameters.algorithm],
    crypto: cryptoPlugin
  })
}

/**
 * A new TOTP secret: `bytes` (default 20, i.e. 160 bits) from the CSPRNG, base32 (RFC 4648) without
 * padding. Fewer than 20 or more than 64 bytes fail with FST_XEMS_BAD_OPTION.
 */
export function generateTotpSecret (bytes = TOTP_SECRET_MIN_BYTES): string {
  if (!Number.isInteger(bytes) || bytes < TOTP_SECRET_MIN_BYTES || bytes > TOTP_SECRET_MAX_BYTES) {
    throw badOption('bytes', `must be an integer from ${TOTP_SECRET_MIN_BYTES} (160 bits) to ${TOTP_SECRET_MAX_BYTES}`)
  }
  return generateSecret({ length: bytes, crypto: cryptoPlugin, base32: base32Plugin })
}

/** Percent-encodes an issuer or label after checking it (1 to 256 characters, no colon, no control). */
function encodeLabelPart (value: unknown, option: 'issuer' | 'label'): string {
  const problem = `must be a string of 1 to ${LABEL_MAX_LENGTH} characters without a colon or control characters`
  if (typeof value !== 'string' || value.length === 0 || value.length > LABEL_MAX_LENGTH || LABEL_FORBIDDEN.test(value)) {
    throw badOption(option, problem)
  }
  try {
    return encodeURIComponent(value)
  } catch {
    throw badOption(option, 'must be well-formed Unicode (it contains a lone surrogate)')
  }
}

/**
 * The `otpauth://` URI to show as a QR code at enrolment (Google Authenticator Key Uri Format):
 * `otpauth://totp/Issuer:label?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`.
 *
 * Issuer and label are percent-encoded (a space is `%20`, never `+`); the issuer is given both as the
 * label prefix and as a parameter, and every parameter is written out, even at its default, so no
 * app has to guess. A colon in issuer or label is refused (the Key Uri Format forbids it).
 */
export function totpUri (options: TotpUriOptions): string {
  const { digits, period, algorithm } = resolveParameters(options)
  decodeSecret(options.secret)
  const issuer = encodeLabelPart(options.issuer, 'issuer')
  const label = encodeLabelPart(options.label, 'label')
  return `otpauth://totp/${issuer}:${label}?secret=${options.secret}&issuer=${issuer}` +
    `&algorithm=${algorithm}&digits=${digits}&period=${period}`
}

/** The code for time `at` (default now). Mostly for tests and tools: servers only verify. */
export async function generateTotp (options: TotpGenerateOptions): Promise<string> {
  const parameters = resolveParameters(options)
  const key = decodeSecret(options.secret)
  return await codeAt(key, stepAt(options.at, parameters.period), parameters)
}

/** True when `token` is exactly `digits` ASCII digits (no spaces, signs or other scripts' digits). */
function isWellFormedCode (token: unknown, digits: number): token is string {
  return typeof token === 'string' && token.length === digits && /^[0-9]+$/.test(token)
}

/**
 * Checks a code typed by the user against the steps from `window` before to `window` after the one
 * containing `at`, skipping steps not after `afterStep` and steps before the epoch.
 *
 * - Options are checked first (FST_XEMS_BAD_OPTION, FST_XEMS_BAD_SECRET); then a token that is not
 *   exactly `digits` ASCII digits answers `{ valid: false, step: null }` without computing any code.
 * - Every candidate step is computed and compared with `crypto.timingSafeEqual`, match or not, so the
 *   time taken does not tell which step matched.
 * - When several acceptable steps match (a 6-digit code repeats across steps about once in a million),
 *   the latest is returned: storing it as `afterStep` then also bars the same code at the later step,
 *   which the earliest would leave open to a replay.
 */
export async function verifyTotp (options: TotpVerifyOptions): Promise<TotpVerifyResult> {
  const parameters = resolveParameters(options)
  const key = decodeSecret(options.secret)
  const { window = DEFAULT_WINDOW, afterStep } = options
  if (!Number.isInteger(window) || window < 0 || window > TOTP_MAX_WINDOW) {
    throw badOption('window', `must be an integer number of steps from 0 to ${TOTP_MAX_WINDOW}`)
  }
  if (afterStep !== null && afterStep !== undefined && !Number.isSafeInteger(afterStep)) {
    throw badOption('afterStep', 'must be the integer step of the last accepted code, or null')
  }
  const current = stepAt(options.at, parameters.period)
  if (!isWellFormedCode(options.token, parameters.digits)) return INVALID

  const given = Buffer.from(options.token, 'ascii')
  const first = Math.max(0, current - window, afterStep === null || afterStep === undefined ? 0 : afterStep + 1)
  let matched: number | null = null
  for (let step = first; step <= current + window; step++) {
    const expected = Buffer.from(await codeAt(key, step, parameters), 'ascii')
    if (timingSafeEqual(expected, given)) matched = step
  }
  return matched === null ? INVALID : { valid: true, step: matched }
}
