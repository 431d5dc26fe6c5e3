import { randomInt } from 'node:crypto'
import { hashPassword, verifyPassword, type PasswordHashOptions } from './password.js'

/**
 * Recovery codes: single-use codes a user keeps offline for when the authenticator is lost.
 * Each is 12 characters from a 32-letter alphabet without look-alikes (60 bits from the CSPRNG),
 * shown as `xxxx-xxxx-xxxx`, stored only as argon2id hashes.
 */
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789'.padEnd(32, '0')
const CODE_CHARS = 12
const RECOVERY_SYNTAX = /^[a-z0-9]{12}$/

export function generateRecoveryCodes (count = 10): string[] {
  return Array.from({ length: count }, () => {
    let code = ''
    for (let i = 0; i < CODE_CHARS; i++) code += ALPHABET[randomInt(ALPHABET.length)]
    return `${code.slice(0, 4)}-${code.slice(4, 8)}-${code.slice(8)}`
  })
}

/** The canonical form of what a user typed (case, spaces and dashes do not matter), or null if it cannot be a code. */
export function normalizeRecoveryCode (input: unknown): string | null {
  if (typeof input !== 'string' || input.length > 40) return null
  const compact = input.replace(/[\s-]/g, '').toLowerCase()
  return RECOVERY_SYNTAX.test(compact) ? compact : null
}

export async function hashRecoveryCodes (codes: string[], options?: PasswordHashOptions): Promise<string[]> {
  return await Promise.all(codes.map(async (code) => await hashPassword(normalizeRecoveryCode(code)!, options)))
}

/** The index of the unused hash that `input` matches, or -1. Used slots are null. */
export async function findRecoveryCode (hashes: ReadonlyArray<string | null>, input: unknown): Promise<number> {
  const code = normalizeRecoveryCode(input)
  if (code === null) return -1
  for (let i = 0; i < hashes.length; i++) {
    const hash = hashes[i]
    if (typeof hash === 'string' && await verifyPassword(hash, code)) return i
  }
  return -1
}
