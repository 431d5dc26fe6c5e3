import { BINDING_KEY } from '../store/contract.js'

/**
 * What a session is bound to: a key pair the client holds and proves possession of. Kept in the session's
 * data under the reserved key BINDING_KEY, so every store seals it with the rest of the data, rotation and
 * migration (pending → active) keep it, and it dies with the session. Only public material is kept: the
 * public key (DBSC, which signs refresh proofs without repeating it) or its RFC 7638 thumbprint (DPoP,
 * whose every proof carries the key), plus, for DBSC, the per-session key of the short-lived bound cookie.
 *
 * Written only by the binding plugins (registration), never by the application's data patches, so a
 * request that changes data or the device record cannot drop or replace a binding.
 */
export { BINDING_KEY }

export interface DbscBinding {
  type: 'dbsc'
  /** The DBSC session identifier the browser names in `Sec-Secure-Session-Id` (random, not the session id). */
  id: string
  /** The algorithm the browser chose at registration (ES256 or RS256). */
  alg: 'ES256' | 'RS256'
  /** The browser's public key (a JWK), from the registration proof. */
  jwk: Record<string, unknown>
  /** Its RFC 7638 thumbprint (base64url SHA-256). */
  jkt: string
  /** base64url of 32 random bytes: the HMAC key of this session's bound cookies. */
  cookieKey: string
  /** When the session was bound (ms since the epoch). */
  boundAt: number
}

export interface DpopBinding {
  type: 'dpop'
  /** The RFC 7638 thumbprint (base64url SHA-256) of the client's public key. */
  jkt: string
  boundAt: number
}

/** A stored binding that does not decode (damaged, or written by a later version): no request is served as its session. */
export interface UnreadableBinding {
  type: 'unreadable'
}

export type SessionBinding = DbscBinding | DpopBinding

export function encodeBinding (binding: SessionBinding): string {
  return JSON.stringify(binding)
}

/**
 * A stored binding, checked field by field; null when the session has none. A binding that is there but
 * does not decode fails closed: it is `unreadable`, never "not bound".
 */
export function decodeBinding (text: string | undefined): SessionBinding | UnreadableBinding | null {
  if (text === undefined) return null
  const unreadable: UnreadableBinding = { type: 'unreadable' }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return unreadable
  }
  if (value === null || typeof value !== 'object') return unreadable
  const v = value as Record<string, unknown>
  if (typeof v.jkt !== 'string' || typeof v.boundAt !== 'number') return unreadable
  if (v.type === 'dpop') return { type: 'dpop', jkt: v.jkt, boundAt: v.boundAt }
  if (v.type === 'dbsc' && typeof v.id === 'string' && (v.alg === 'ES256' || v.alg === 'RS256') &&
    v.jwk !== null && typeof v.jwk === 'object' && typeof v.cookieKey === 'string') {
    return {
      type: 'dbsc', id: v.id, alg: v.alg, jwk: v.jwk as Record<string, unknown>, jkt: v.jkt, cookieKey: v.cookieKey, boundAt: v.boundAt
    }
  }
  return unreadable
}
