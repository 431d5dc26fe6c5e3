import { randomInt } from 'node:crypto'
import { hashPassword, verifyPassword, type PasswordHashOptions } from './password.js'

/**
 * Recovery codes: single-use codes a user keeps offline (often on paper) for when the authenticator is lost.
 * Each is 12 characters drawn uniformly by the CSPRNG from a 32-character alphabet, so 12 × 5 = 60 bits
 * per code; shown as `xxxx-xxxx-xxxx`, stored only as argon2id hashes of the canonical form (12 characters,
 * no hyphens, lower case).
 *
 * The alphabet leaves out the letters a person confuses with digits (`i`, `l`, `o`) and the digit `1`; it
 * keeps `0`. So a person's `o` (or `O`) can only mean `0`, and mapping it there never merges two codes.
 */
export const RECOVERY_ALPHABET = 'abcdefghjkmnpqrstuvwxyz023456789'
const CODE_CHARS = 12
const RECOVERY_SYNTAX = new RegExp(`^[${RECOVERY_ALPHABET}]{${CODE_CHARS}}$`)
/** Separators and spacing a person may type or a copy-paste may carry: none of them is in the alphabet. */
const SEPARATORS = /[\s\-_.·\u00ad\u2010-\u2015\u2212\u30fc]/gu
/** Characters a person may type for an alphabet character printed on paper (after lower-casing). */
const LOOK_ALIKES: Readonly<Record<string, string>> = { o: '0', ø: '0', '°': '0' }

export function generateRecoveryCodes (count = 10): string[] {
  return Array.from({ length: count }, () => {
    let code = ''
    for (let i = 0; i < CODE_CHARS; i++) code += RECOVERY_ALPHABET[randomInt(RECOVERY_ALPHABET.length)]
    return `${code.slice(0, 4)}-${code.slice(4, 8)}-${code.slice(8)}`
  })
}

/**
 * The canonical form of what a person typed, or null if it cannot be a code. Accepted: any case, full-width
 * characters (NFKC), spaces, hyphens missing, extra or of another kind (en dash, minus sign…), and `o`/`O`
 * for `0`. Every accepted input maps to exactly one code, and every code to itself without its hyphens: two
 * different codes never meet.
 */
export function normalizeRecoveryCode (input: unknown): string | null {
  if (typeof input !== 'string' || input.length > 64) return null
  const compact = input.normalize('NFKC').toLowerCase().replace(SEPARATORS, '')
  let code = ''
  for (const char of compact) code += LOOK_ALIKES[char] ?? char
  return RECOVERY_SYNTAX.test(code) ? code : null
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
