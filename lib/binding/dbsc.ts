import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, importJWK, jwtVerify, type JWK } from 'jose'
import type { DbscBinding } from './binding.js'
import { xemsError, XemsError, type XemsErrorCode } from '../errors.js'

/**
 * Device Bound Session Credentials, the server side, following the W3C WebAppSec draft
 * (w3c/webappsec-dbsc spec.bs at d346811, 2026-02-17). The browser keeps a private key (in the TPM where
 * it has one) and proves possession of it to get a short-lived bound cookie:
 *
 * 1. a sign-in response carries `Secure-Session-Registration: (ES256 RS256);path="…";challenge="…"`;
 * 2. the browser POSTs to that path with `Secure-Session-Response: "<JWT>"`: typ `dbsc+jwt`, its public key in
 *    the `jwk` header, the challenge as `jti`; the answer is the session instructions (JSON) and the bound cookie;
 * 3. when the bound cookie is missing or expired, the browser POSTs to `refresh_url` with
 *    `Sec-Secure-Session-Id: "<id>"` and a proof for its cached challenge (signed, no `jwk`); a 403 with a
 *    fresh `Secure-Session-Challenge: "<c>";id="<id>"` makes it sign that one and retry; a 200 sets the cookie;
 *    `{"continue": false}` (or any 4xx but 403) makes it drop the session.
 *
 * Framework-free; plugins/session/dbsc.ts maps it to routes. JWS verification is jose's; nothing here parses a JWS.
 */
export const DBSC_ALGORITHMS = ['ES256', 'RS256'] as const
export type DbscAlgorithm = typeof DBSC_ALGORITHMS[number]
const MAX_PROOF_LENGTH = 8192
const MAX_CHALLENGE_LENGTH = 128

export function dbscError (code: Extract<XemsErrorCode, `FST_XEMS_DBSC_${string}`>): XemsError {
  return xemsError(code)
}

/** A random challenge or DBSC session identifier: 128 bits, base64url (safe inside a structured-field string). */
export function randomId (): string {
  return randomBytes(16).toString('base64url')
}

/**
 * The value of a structured-field string header (RFC 9651 §3.3.3), e.g. `"abc"` (parameters ignored, as the
 * draft says for `Secure-Session-Response` and `Sec-Secure-Session-Id`); null when it is not one.
 */
export function parseSfString (header: unknown, maxLength = MAX_PROOF_LENGTH): string | null {
  if (typeof header !== 'string' || header.length > maxLength + 64) return null
  const text = header.trim()
  if (!text.startsWith('"')) return null
  let out = ''
  for (let i = 1; i < text.length; i++) {
    const c = text[i]!
    if (c === '\\') {
      const next = text[i + 1]
      if (next !== '"' && next !== '\\') return null
      out += next
      i++
    } else if (c === '"') {
      const rest = text.slice(i + 1)
      if (rest !== '' && !rest.startsWith(';')) return null
      return out.length > 0 && out.length <= maxLength ? out : null
    } else {
      const code = c.charCodeAt(0)
      if (code < 0x20 || code > 0x7e) return null
      out += c
    }
  }
  return null
}

/** The reason tokens of a `Secure-Session-Skipped` request header (`unreachable`, `server_error`, `quota_exceeded`). */
export function skippedReasons (header: unknown): string[] {
  if (typeof header !== 'string') return []
  return header.split(',')
    .map((item) => item.trim().split(';')[0]!)
    .filter((token) => ['unreachable', 'server_error', 'quota_exceeded'].includes(token))
    .slice(0, 8)
}

/** `Secure-Session-Registration` for a sign-in response. */
export function registrationHeader (algorithms: readonly DbscAlgorithm[], path: string, challenge: string): string {
  return `(${algorithms.join(' ')});path="${path}";challenge="${challenge}"`
}

/** `Secure-Session-Challenge` for a DBSC session. */
export function challengeHeader (challenge: string, sessionId: string): string {
  return `"${challenge}";id="${sessionId}"`
}

export interface RegistrationProof {
  alg: DbscAlgorithm
  jwk: JWK
  jkt: string
  /** The challenge the proof signed. */
  jti: string
}

/** Verifies a registration proof: signed by the public key in its own `jwk` header, typ `dbsc+jwt`. */
export async function verifyRegistrationProof (header: unknown, algorithms: readonly DbscAlgorithm[]): Promise<RegistrationProof> {
  const jwt = parseSfString(header)
  if (jwt === null) throw dbscError('FST_XEMS_DBSC_INVALID')
  try {
    const { payload, protectedHeader } = await jwtVerify(jwt, EmbeddedJWK, { typ: 'dbsc+jwt', algorithms: [...algorithms] })
    const jti = challengeOf(payload.jti)
    const jwk = publicJwk(protectedHeader.jwk as JWK)
    return { alg: protectedHeader.alg as DbscAlgorithm, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256'), jti }
  } catch (err) {
    if (err instanceof XemsError) throw err
    throw dbscError('FST_XEMS_DBSC_INVALID')
  }
}

/**
 * Verifies a refresh proof with the key the session was registered with. Returns the challenge it signed,
 * or null when the request carries no proof at all (the browser had no cached challenge: answer 403 with one).
 */
export async function verifyRefreshProof (header: unknown, binding: DbscBinding): Promise<string | null> {
  if (header === undefined) return null
  const jwt = parseSfString(header)
  if (jwt === null) throw dbscError('FST_XEMS_DBSC_INVALID')
  try {
    // The algorithm is the registered one: a proof cannot pick another (no alg confusion).
    if (decodeProtectedHeader(jwt).alg !== binding.alg) throw dbscError('FST_XEMS_DBSC_INVALID')
    const key = await importJWK(binding.jwk as JWK, binding.alg)
    const { payload } = await jwtVerify(jwt, key, { typ: 'dbsc+jwt', algorithms: [binding.alg] })
    return challengeOf(payload.jti)
  } catch (err) {
    if (err instanceof XemsError) throw err
    throw dbscError('FST_XEMS_DBSC_INVALID')
  }
}

function challengeOf (jti: unknown): string {
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_CHALLENGE_LENGTH) throw dbscError('FST_XEMS_DBSC_INVALID')
  return jti
}

/** The public members of a key only (a JWK header never needs more; jose already refused a private one). */
function publicJwk (jwk: JWK): JWK {
  if (jwk.kty === 'EC') return { kty: 'EC', crv: jwk.crv!, x: jwk.x!, y: jwk.y! }
  if (jwk.kty === 'RSA') return { kty: 'RSA', n: jwk.n!, e: jwk.e! }
  throw dbscError('FST_XEMS_DBSC_INVALID')
}

/** A new binding for a verified registration. */
export function newBinding (proof: RegistrationProof, now: number): DbscBinding {
  return {
    type: 'dbsc',
    id: randomId(),
    alg: proof.alg,
    jwk: { ...proof.jwk },
    jkt: proof.jkt,
    cookieKey: randomBytes(32).toString('base64url'),
    boundAt: now
  }
}

/**
 * The bound cookie's value: its expiry (seconds) and an HMAC of it with the session's own cookie key, so it
 * opens nothing, proves nothing about any other session, and is worthless after `expiresAt`. No store write.
 */
export function boundCookieValue (binding: DbscBinding, expiresAt: number): string {
  const exp = Math.floor(expiresAt / 1000).toString(36)
  return `${exp}.${mac(binding, exp)}`
}

/** True when `value` is a bound cookie of this session that has not expired. */
export function boundCookieValid (binding: DbscBinding, value: string | undefined, now: number): boolean {
  if (value === undefined || value.length > 64) return false
  const dot = value.indexOf('.')
  if (dot < 1) return false
  const exp = value.slice(0, dot)
  if (!/^[0-9a-z]{1,12}$/.test(exp) || parseInt(exp, 36) * 1000 <= now) return false
  const expected = Buffer.from(mac(binding, exp))
  const given = Buffer.from(value.slice(dot + 1))
  return given.length === expected.length && timingSafeEqual(given, expected)
}

function mac (binding: DbscBinding, exp: string): string {
  return createHmac('sha256', Buffer.from(binding.cookieKey, 'base64url')).update(`xems-dbsc.${binding.id}.${exp}`).digest('base64url')
}

export interface InstructionsInput {
  sessionId: string
  refreshUrl: string
  cookieName: string
  /** The bound cookie's attributes as a Set-Cookie line carries them, without Max-Age/Expires. */
  cookieAttributes: string
}

/** The JSON session instructions of the draft (§ "JSON Session Instruction Format"). */
export function sessionInstructions (input: InstructionsInput): Record<string, unknown> {
  return {
    session_identifier: input.sessionId,
    refresh_url: input.refreshUrl,
    scope: { include_site: false },
    credentials: [{ type: 'cookie', name: input.cookieName, attributes: input.cookieAttributes }]
  }
}

/** The instructions that make the browser drop its session (it ended here). */
export const TERMINATE = Object.freeze({ continue: false })
