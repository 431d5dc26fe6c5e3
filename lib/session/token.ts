import { sha256Prefix16 } from '../crypto/cipher.js'
import { randomBase64url, TOKEN_LENGTH } from '../crypto/random-token.js'

/**
 * Session tokens name their session: `<locator>.<secret>`.
 *
 * - The locator is 16 CSPRNG bytes (22 base64url characters), fixed for the life of a session. The store
 *   never holds it: it files the session under `recordId = SHA-256("xems/record|" + locator)` (16 bytes), so a dump
 *   of the store gives no locator. Logs, events and session lists use a third name, the public id,
 *   derived from the record id (`SHA-256("xems/public|" + recordId)`, 16 bytes): it names a session
 *   without opening or targeting it.
 * - The secret is 32 bytes (43 base64url characters), new at every rotation: CSPRNG bytes when a session
 *   opens or migrates, and at a rotation SHA-512 of the previous token and 32 fresh CSPRNG bytes
 *   (cipher.ts successorOf). The store keeps only `SHA-256(token)` (16 bytes) of the current token and of
 *   recently rotated ones.
 *
 * Because a token says which session it belongs to, a token of a known session whose secret is not one
 * the session currently accepts can only be an earlier token of that session (nobody else knows its
 * locator): that is the theft signal, however many rotations ago it was issued, with no history kept.
 */
export const LOCATOR_BYTES = 16
export const LOCATOR_LENGTH = 22
export const SESSION_TOKEN_LENGTH = LOCATOR_LENGTH + 1 + TOKEN_LENGTH

// Canonical base64url only: 16 bytes end in a character carrying 2 data bits (A, Q, g, w); 32 bytes in
// one carrying 4 (the 16 below). A token we issued always matches; nothing else can be adopted.
const SESSION_TOKEN_SYNTAX = /^[A-Za-z0-9_-]{21}[AQgw]\.[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/

// Record ids, token keys and public ids are SHA-256 cut to 16 bytes (22 characters, sha256Prefix16): 128
// bits is far beyond any search for a preimage or a collision among sessions, and a million sessions keep
// 48 MB less than with whole digests.

/** A presented token, split. */
export interface ParsedToken {
  token: string
  locator: string
  secret: string
}

/** A new locator for a new session: 16 bytes from the CSPRNG. */
export function generateLocator (): string {
  return randomBase64url(LOCATOR_BYTES)
}

/** The token of `locator` with a fresh secret. */
export function sessionTokenOf (locator: string, secret: string): string {
  return `${locator}.${secret}`
}

/** True when `value` has the exact shape of a session token we issue; checked before any store work. */
export function isWellFormedSessionToken (value: unknown): value is string {
  return typeof value === 'string' && value.length === SESSION_TOKEN_LENGTH && SESSION_TOKEN_SYNTAX.test(value)
}

/** Splits a presented token; null unless it has the exact shape of one we issue. */
export function parseSessionToken (value: unknown): ParsedToken | null {
  if (!isWellFormedSessionToken(value)) return null
  return { token: value, locator: value.slice(0, LOCATOR_LENGTH), secret: value.slice(LOCATOR_LENGTH + 1) }
}

/** The name the store files a session under. Not a credential, and it does not give the locator. */
export function recordIdOf (locator: string): string {
  return sha256Prefix16('xems/record|' + locator)
}

/** The store's key for one token: SHA-256 of the whole token. */
export function secretKeyOf (token: string): string {
  return sha256Prefix16(token)
}

/** The public id of a session (logs, events, device lists): names it, opens and targets nothing. */
export function publicIdOf (recordId: string): string {
  return sha256Prefix16('xems/public|' + recordId)
}
