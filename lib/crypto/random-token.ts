import { hash, randomFillSync } from 'node:crypto'

/** Bytes of CSPRNG output in a session token: 256 bits. */
export const TOKEN_BYTES = 32
/** Length of a token in base64url without padding. */
export const TOKEN_LENGTH = 43

// 32 bytes are 256 bits; 43 base64url characters carry 258, so the last character holds 4 data bits
// and 2 zero bits. Only these 16 characters can end a token that we issued (canonical encoding).
const TOKEN_SYNTAX = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/

// CSPRNG output is drawn from a pool refilled 4 KiB at a time: one system call for 128 tokens instead of
// one each. Every byte is handed out once and the used part is zeroed.
const POOL_BYTES = 4096
const pool = Buffer.alloc(POOL_BYTES)
let poolOffset = POOL_BYTES

/** `bytes` CSPRNG bytes as base64url (without padding). */
export function randomBase64url (bytes: number): string {
  return drawnBase64url(bytes, -1)
}

/**
 * `bytes` bytes as base64url, the first being `first` and the rest CSPRNG output (a versioned nonce:
 * cipher.ts successorOf).
 */
export function randomBase64urlWith (first: number, bytes: number): string {
  return drawnBase64url(bytes, first)
}

function drawnBase64url (bytes: number, first: number): string {
  if (poolOffset + bytes > POOL_BYTES) {
    randomFillSync(pool)
    poolOffset = 0
  }
  const chunk = pool.subarray(poolOffset, poolOffset + bytes)
  poolOffset += bytes
  if (first >= 0) chunk[0] = first
  const text = chunk.toString('base64url')
  chunk.fill(0)
  return text
}

/**
 * A new 256-bit secret: 32 bytes from the CSPRNG, base64url. The secret half of a session's first token
 * and of a migrated session's new one (lib/session/token.ts; a rotation derives its secret instead,
 * cipher.ts successorOf), and the MFA plugin's remember-device token. Never stored; only its key is.
 */
export function generateToken (): string {
  return randomBase64url(TOKEN_BYTES)
}

/**
 * True when `value` has the exact shape of a secret generateToken makes. Checked before any store work, so junk,
 * oversized or non-canonical values cost nothing and can never be adopted.
 */
export function isWellFormedToken (value: unknown): value is string {
  return typeof value === 'string' && value.length === TOKEN_LENGTH && TOKEN_SYNTAX.test(value)
}

/** The store key of a token: SHA-256, base64url. A dump of the store yields no usable token. */
export function tokenKey (token: string): string {
  return hash('sha256', token, 'base64url')
}
