import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify, type JWK } from 'jose'
import { xemsError, type XemsError, type XemsErrorCode } from '../errors.js'

/**
 * DPoP proofs (RFC 9449) for header clients, checked as §4.3 lists: one well-formed `dpop+jwt`, signed
 * with an asymmetric algorithm by the public key in its own header (jose verifies it, nothing here parses
 * a JWS), `htm` / `htu` naming this request, `iat` inside the window, `ath` the hash of the token the
 * request presents, the server's nonce when it asks for one, and a `jti` never seen before (a single-use
 * claim the caller makes atomically in the store). Framework-free: plugins/session/dpop.ts feeds it requests.
 */
export const DPOP_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'RS256', 'PS256', 'EdDSA'] as const
export type DpopAlgorithm = typeof DPOP_ALGORITHMS[number]
/** A proof is a few hundred bytes (an RSA-4096 key makes it about 1.5 kB); anything much longer is junk. */
export const MAX_PROOF_LENGTH = 4096
const MAX_JTI_LENGTH = 256

export interface DpopCheck {
  /** The `DPoP` header value. */
  proof: unknown
  /** The request's method. */
  method: string
  /** The request's URL as the client addressed it; query and fragment are ignored. */
  url: string
  /** The token the request presents, when it presents one: `ath` must then be its hash. */
  accessToken?: string | undefined
  /** The thumbprint the session is bound to, when it is bound: the proof must be signed by that key. */
  jkt?: string | undefined
  now: number
  /** How far `iat` may be from now, either way (ms). */
  iatWindow: number
  algorithms: readonly DpopAlgorithm[]
  /** When set, the proof must carry a nonce this accepts. */
  nonce?: ((nonce: unknown) => boolean) | undefined
  /**
   * Claims the proof's `jti` (a short key derived from the key and the jti) for `ttl` ms: true for the first
   * caller only. Atomic in the store (`add`), so of parallel replays of one proof exactly one gets through.
   */
  claim: (key: string, ttl: number) => Promise<boolean>
}

export interface VerifiedProof {
  /** RFC 7638 thumbprint of the key that signed the proof. */
  jkt: string
  jti: string
  iat: number
}

/** One DPoP failure: its stable code and the RFC 9449 `error` of the `WWW-Authenticate` challenge. */
export function dpopError (code: Extract<XemsErrorCode, `FST_XEMS_DPOP_${string}`>): XemsError {
  return xemsError(code)
}

export async function verifyDpopProof (check: DpopCheck): Promise<VerifiedProof> {
  const { proof } = check
  if (typeof proof !== 'string' || proof.length === 0 || proof.length > MAX_PROOF_LENGTH) throw dpopError('FST_XEMS_DPOP_INVALID')
  let payload: Record<string, unknown>
  let jwk: JWK
  try {
    const verified = await jwtVerify(
      proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: [...check.algorithms], currentDate: new Date(check.now) }
    )
    payload = verified.payload
    jwk = verified.protectedHeader.jwk as JWK
  } catch {
    throw dpopError('FST_XEMS_DPOP_INVALID')
  }
  const { jti, htm, htu, iat } = payload
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH ||
    typeof htm !== 'string' || typeof htu !== 'string' || typeof iat !== 'number' || !Number.isFinite(iat)) {
    throw dpopError('FST_XEMS_DPOP_INVALID')
  }
  if (htm !== check.method || !sameTarget(htu, check.url)) throw dpopError('FST_XEMS_DPOP_WRONG_TARGET')
  if (Math.abs(iat * 1000 - check.now) > check.iatWindow) throw dpopError('FST_XEMS_DPOP_STALE')
  if (check.nonce !== undefined && !check.nonce(payload.nonce)) throw dpopError('FST_XEMS_DPOP_NONCE')
  if (check.accessToken !== undefined && !sameText(payload.ath, tokenHash(check.accessToken))) throw dpopError('FST_XEMS_DPOP_ATH')
  const jkt = await calculateJwkThumbprint(jwk, 'sha256')
  if (check.jkt !== undefined && !sameText(jkt, check.jkt)) throw dpopError('FST_XEMS_DPOP_WRONG_KEY')
  // Last: only a proof that passed everything else uses up its jti.
  const key = createHash('sha256').update(`${jkt}.${jti}`).digest('base64url')
  if (!await check.claim(key, 2 * check.iatWindow)) throw dpopError('FST_XEMS_DPOP_REPLAYED')
  return { jkt, jti, iat }
}

/** `ath`: base64url of the SHA-256 of the token's ASCII text (RFC 9449 §4.2). */
export function tokenHash (token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url')
}

/** htu and the request URL name one resource: same scheme, host, port and path; query and fragment ignored (§4.3). */
export function sameTarget (htu: string, url: string): boolean {
  try {
    const a = new URL(htu)
    const b = new URL(url)
    return a.protocol === b.protocol && a.host === b.host && a.pathname === b.pathname
  } catch {
    return false
  }
}

function sameText (a: unknown, b: string): boolean {
  if (typeof a !== 'string') return false
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/**
 * Server nonces (RFC 9449 §8/§9) without a store: a nonce names a time window and carries an HMAC of it,
 * so any instance that shares the secret accepts it; the current and the previous window are accepted.
 */
export class DpopNonces {
  readonly #secret: Buffer
  readonly #window: number
  readonly #now: () => number

  constructor (secret: Buffer | undefined, windowMs: number, now: () => number) {
    this.#secret = secret ?? randomBytes(32)
    this.#window = windowMs
    this.#now = now
  }

  /** The nonce clients should use now (sent in `DPoP-Nonce`). */
  current (): string {
    return this.#of(Math.floor(this.#now() / this.#window))
  }

  accepts (nonce: unknown): boolean {
    if (typeof nonce !== 'string' || nonce.length > 64) return false
    const step = Math.floor(this.#now() / this.#window)
    return sameText(nonce, this.#of(step)) || sameText(nonce, this.#of(step - 1))
  }

  #of (step: number): string {
    const label = step.toString(36)
    return `${label}.${createHmac('sha256', this.#secret).update(`xems-dpop-nonce.${label}`).digest('base64url').slice(0, 22)}`
  }
}
