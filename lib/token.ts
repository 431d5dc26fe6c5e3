import { createHash, randomBytes } from 'node:crypto'

/** Bytes of CSPRNG output in a session token: 256 bits. */
export const TOKEN_BYTES = 32
/** Length of a token in base64url without padding. */
export const TOKEN_LENGTH = 43

// 32 bytes are 256 bits; 43 base64url characters carry 258, so the last character holds 4 data bits
// and 2 zero bits. Only these 16 characters can end a token that we issued (canonical encoding).
const TOKEN_SYNTAX = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/

/** A new session token: 32 bytes from the CSPRNG, base64url. Never stored; only its key is. */
export function generateToken (): string {
  return randomBytes(TOKEN_BYTES).toString('base64url')
}

/** A new stable session id (not a credential: it never authenticates anything). */
export function generateSessionId (): string {
  return randomBytes(16).toString('base64url')
}

/**
 * True when `value` has the exact shape of a token we issue. Checked before any store work, so junk,
 * oversized or non-canonical values cost nothing and can never be adopted.
 */
export function isWellFormedToken (value: unknown): value is string {
  return typeof value === 'string' && value.length === TOKEN_LENGTH && TOKEN_SYNTAX.test(value)
}

/** The store key of a token: SHA-256, base64url. A dump of the store yields no usable token. */
export function tokenKey (token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}
