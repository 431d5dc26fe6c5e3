import { randomBytes } from 'node:crypto'
import argon2 from 'argon2'
import { badOption, xemsError } from '../errors.js'

/**
 * Password hashing with argon2id (OWASP Password Storage Cheat Sheet).
 *
 * Hashes are PHC strings (`$argon2id$v=19$m=19456,p=1,t=2$<salt>$<hash>`) that carry their own
 * parameters and a unique 16-byte random salt, so they verify after the defaults are raised, and
 * `needsRehash` tells when a stored hash should be rewritten at the current parameters.
 *
 * Passwords are normalised to Unicode NFKC before hashing and verifying (NIST SP 800-63B 5.1.1.2), so
 * the same password typed on two keyboards (composed or decomposed accents, full-width digits) matches.
 */

/** argon2id parameters. Each may be raised above the OWASP minimum, never lowered below it. */
export interface PasswordHashOptions {
  /** Memory in KiB (not bytes). Minimum and default 19456 (19 MiB); at most 4194304 (4 GiB). */
  memoryCost?: number | undefined
  /** Passes over memory. Minimum and default 2; at most 100. */
  timeCost?: number | undefined
  /** Lanes. Minimum and default 1; at most 64. */
  parallelism?: number | undefined
}

/** Resolved parameters: what a hash is made with. */
interface Argon2Parameters {
  memoryCost: number
  timeCost: number
  parallelism: number
}

/** OWASP minimum for argon2id, also the default: m = 19 MiB, t = 2, p = 1. */
export const PASSWORD_DEFAULTS: Readonly<Argon2Parameters> = Object.freeze({
  memoryCost: 19456,
  timeCost: 2,
  parallelism: 1
})

// Upper bounds catch unit mistakes (memoryCost given in bytes is 1024 times too large) and keep a
// tampered stored hash from making one verification allocate gigabytes or run for minutes.
const MAX_PARAMETERS: Readonly<Argon2Parameters> = Object.freeze({
  memoryCost: 4194304,
  timeCost: 100,
  parallelism: 64
})

/**
 * Longest accepted password, in UTF-16 code units (`string.length`). Long enough for any passphrase
 * or password manager, short enough that nobody makes us normalise and hash megabytes.
 */
export const MAX_PASSWORD_LENGTH = 1024

/** argon2 version 0x13 (1.3), the current one; older hashes need a rehash. */
const ARGON2_VERSION = 0x13

// PHC string of an argon2 hash: `$id[$v=version]$params$salt$hash`. The version field is absent in
// hashes of argon2 1.0 (0x10). The parameters come in any order: argon2@0.45 writes `m=…,p=…,t=…`,
// the reference implementation `m=…,t=…,p=…`.
const PHC_SYNTAX = /^\$(argon2id|argon2i|argon2d)\$(?:v=(\d{1,3})\$)?([a-z]+=[A-Za-z0-9+/]+(?:,[a-z]+=[A-Za-z0-9+/]+)*)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/
const PHC_NUMBER = /^([mtp])=(\d{1,10})$/
// No real PHC string of ours comes near this length; a longer one is refused before any parsing.
const MAX_HASH_LENGTH = 512

/**
 * Resolves and checks hashing parameters. Anything below the OWASP minimum, above the bounds, or
 * not an integer fails with FST_XEMS_BAD_OPTION naming the option.
 */
function resolveOptions (options: PasswordHashOptions = {}): Argon2Parameters {
  const resolved = { ...PASSWORD_DEFAULTS }
  for (const name of ['memoryCost', 'timeCost', 'parallelism'] as const) {
    const value = options[name]
    if (value === undefined) continue
    const min = PASSWORD_DEFAULTS[name]
    const max = MAX_PARAMETERS[name]
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw badOption(name, `must be an integer from ${min} (OWASP minimum for argon2id) to ${max}`)
    }
    resolved[name] = value
  }
  return resolved
}

/** A password we agree to work on: a string of at most MAX_PASSWORD_LENGTH characters. */
function isAcceptablePassword (password: unknown): password is string {
  return typeof password === 'string' && password.length <= MAX_PASSWORD_LENGTH
}

/**
 * Hashes `password` with argon2id and a fresh random salt; returns the PHC string to store.
 *
 * An empty password, a non-string or one over MAX_PASSWORD_LENGTH characters fails with
 * FST_XEMS_BAD_VALUE (statusCode 400): it comes from a client, typically at registration.
 * Weak `options` fail with FST_XEMS_BAD_OPTION.
 */
export async function hashPassword (password: string, options?: PasswordHashOptions): Promise<string> {
  const parameters = resolveOptions(options)
  if (!isAcceptablePassword(password) || password.length === 0) {
    throw xemsError('FST_XEMS_BAD_PASSWORD', [MAX_PASSWORD_LENGTH])
  }
  return await argon2.hash(password.normalize('NFKC'), { type: argon2.argon2id, ...parameters })
}

/** The parameters written in a stored argon2 PHC string, or null when it is not one. */
interface StoredParameters extends Argon2Parameters {
  type: 'argon2id' | 'argon2i' | 'argon2d'
  version: number
}

function readStoredHash (hash: unknown): StoredParameters | null {
  if (typeof hash !== 'string' || hash.length > MAX_HASH_LENGTH) return null
  const match = PHC_SYNTAX.exec(hash)
  if (match === null) return null
  // Each of m, t, p exactly once, as a decimal number; `data` (associated data) may appear too.
  const numbers = new Map<string, number>()
  for (const entry of match[3]!.split(',')) {
    const number = PHC_NUMBER.exec(entry)
    if (number !== null && !numbers.has(number[1]!)) numbers.set(number[1]!, Number(number[2]))
    else if (!entry.startsWith('data=')) return null
  }
  const [m, t, p] = [numbers.get('m'), numbers.get('t'), numbers.get('p')]
  if (m === undefined || t === undefined || p === undefined) return null
  return {
    type: match[1] as StoredParameters['type'],
    version: match[2] === undefined ? 0x10 : Number(match[2]),
    memoryCost: m,
    timeCost: t,
    parallelism: p
  }
}

function withinBounds (stored: Argon2Parameters): boolean {
  return stored.memoryCost <= MAX_PARAMETERS.memoryCost &&
    stored.timeCost <= MAX_PARAMETERS.timeCost &&
    stored.parallelism <= MAX_PARAMETERS.parallelism
}

// One dummy hash per parameter set, computed on first use and shared by concurrent callers.
const dummyHashes = new Map<string, Promise<string>>()

/** A hash of a random password nobody knows, made with `parameters`: the stand-in for unknown users. */
function dummyHash (parameters: Argon2Parameters): Promise<string> {
  const key = `${parameters.memoryCost},${parameters.timeCost},${parameters.parallelism}`
  let pending = dummyHashes.get(key)
  if (pending === undefined) {
    pending = argon2.hash(randomBytes(32), { type: argon2.argon2id, ...parameters })
    // A failed computation is not cached, so the next call tries again.
    pending.catch(() => dummyHashes.delete(key))
    dummyHashes.set(key, pending)
  }
  return pending
}

/**
 * True when `password` matches the stored `hash`. Never throws for bad input: it answers false.
 *
 * - `hash` null or undefined (unknown user): the password is verified against a dummy hash made with
 *   the same parameters (`options`, default OWASP minimum; pass the options given to `hashPassword`),
 *   and the answer is false. The work, and so the time, is that of a real verification, so the
 *   answer does not reveal whether the user exists. The dummy hash is computed on first use (that one
 *   call takes about twice as long); call `verifyPassword(null, 'warm-up', options)` at start-up to
 *   pay that cost early.
 * - A password that is not a string, is empty, or is longer than MAX_PASSWORD_LENGTH characters
 *   answers false at once, whether the user exists or not: such a password can never have been
 *   hashed by `hashPassword`, and answering the same for both keeps user existence hidden.
 * - A malformed stored hash, or one whose parameters exceed the bounds above (a tampered store),
 *   answers false without computing anything.
 *
 * Hashes of argon2i/argon2d or of older parameters still verify; `needsRehash` says to upgrade them.
 */
export async function verifyPassword (hash: string | null | undefined, password: string, options?: PasswordHashOptions): Promise<boolean> {
  const parameters = resolveOptions(options)
  if (!isAcceptablePassword(password) || password.length === 0) return false
  const normalized = password.normalize('NFKC')
  if (hash === null || hash === undefined) {
    await argon2.verify(await dummyHash(parameters), normalized)
    return false
  }
  const stored = readStoredHash(hash)
  if (stored === null || !withinBounds(stored)) return false
  try {
    return await argon2.verify(hash, normalized)
  } catch {
    // Parameters the argon2 binding rejects (e.g. memory below 8 × parallelism): not a usable hash.
    return false
  }
}

/**
 * True when the stored `hash` should be replaced by `hashPassword(password, options)` after the next
 * successful verification: it is not argon2id, not argon2 version 1.3, not a readable argon2 hash,
 * or one of its parameters is below the current `options` (default OWASP minimum).
 *
 * `argon2.needsRehash` answers whether the parameters differ at all; a difference only calls for a
 * rehash when the stored hash is weaker, since rewriting a stronger hash at lower parameters (after
 * the options were lowered again) would weaken it.
 */
export function needsRehash (hash: string, options?: PasswordHashOptions): boolean {
  const current = resolveOptions(options)
  const stored = readStoredHash(hash)
  if (stored === null || stored.type !== 'argon2id') return true
  if (!argon2.needsRehash(hash, { ...current, version: ARGON2_VERSION })) return false
  return stored.version !== ARGON2_VERSION ||
    stored.memoryCost < current.memoryCost ||
    stored.timeCost < current.timeCost ||
    stored.parallelism < current.parallelism
}
