import { createCipheriv, createDecipheriv, createHash, hash, hkdfSync, randomBytes } from 'node:crypto'
import { xemsError } from '../errors.js'
import { randomBase64urlWith } from './random-token.js'

/**
 * AES-256-GCM sealing with keys derived by HKDF-SHA256.
 *
 * Sealed layout (binary): `version(1) | keyId(4) | nonce(12) | tag(16) | ciphertext`.
 * The associated data (AAD) binds a payload to its place (sandbox, key): moved elsewhere, it does not open.
 */
const FORMAT_VERSION = 1
const KEY_ID_BYTES = 4
const NONCE_BYTES = 12
const TAG_BYTES = 16
const HEADER_BYTES = 1 + KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES

/** Exactly 32 bytes of key material. */
export const SECRET_BYTES = 32

/**
 * A one-shot digest as a Buffer (`crypto.hash`, in every Node this package supports). Off the request
 * path only: a Buffer result gets an ArrayBuffer of its own, several times the cost of a text result.
 */
export function sha (algorithm: 'sha256' | 'sha512', data: string | Buffer): Buffer {
  return hash(algorithm, data, 'buffer')
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
/** By base64url character (its char code) of value v, the character of value v & mask. */
function maskedCharacters (mask: number): string[] {
  const table: string[] = []
  for (let v = 0; v < 64; v++) table[BASE64URL.charCodeAt(v)] = BASE64URL[v & mask]!
  return table
}
/** A base64url character's top 2 bits alone (v & 0b110000). */
const TOP_TWO_BITS = maskedCharacters(0x30)
/** A base64url character's top 4 bits alone (v & 0b111100). */
const TOP_FOUR_BITS = maskedCharacters(0x3c)

/**
 * The first 16 bytes of SHA-256(data), as base64url (22 characters): the same text as
 * `sha('sha256', data).subarray(0, 16).toString('base64url')`, about three times faster (no Buffer: the
 * digest is encoded by the hash call itself). 21 characters carry 126 bits; the 22nd carries bits 126–127.
 */
export function sha256Prefix16 (data: string): string {
  const text = hash('sha256', data, 'base64url')
  return text.slice(0, 21) + TOP_TWO_BITS[text.charCodeAt(21)]!
}

/** HKDF-SHA256 from input key material to a 32-byte key for one purpose (`info`). */
export function deriveKey (ikm: Buffer, info: string, salt: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info, 'utf8'), 32))
}

const MAKE_ONE = 'make one with `openssl rand -base64 32` (or `node -e ' +
  '"console.log(require(\'crypto\').randomBytes(32).toString(\'base64\'))"`)'

/**
 * Reads a 32-byte secret. Each accepted form, and how it is read:
 *
 * - a Buffer or Uint8Array of exactly 32 bytes: those bytes;
 * - 64 hex characters (`openssl rand -hex 32`): decoded from hex;
 * - 43 or 44 characters of base64 or base64url of 32 bytes (`openssl rand -base64 32`): decoded;
 * - any other string of exactly 32 printable ASCII characters: its ASCII bytes, as typed.
 *
 * Secrets with obviously no entropy are refused: all one byte (32 zero bytes, 32 × `a`), a short
 * repeated pattern (`password` × 4), a run of consecutive bytes (`abcd…`), fewer than 12 distinct
 * bytes, and 32 hex characters (16 bytes of hex, which would be read as ASCII: use 64). Anything
 * else fails with FST_XEMS_BAD_SECRET naming `option`, without echoing the value.
 */
export function parseSecret (value: unknown, option: string): Buffer {
  let bytes: Buffer | undefined
  let ascii = false
  if (value instanceof Uint8Array) {
    if (value.length === SECRET_BYTES) bytes = Buffer.from(value)
  } else if (typeof value === 'string') {
    if (/^[0-9a-fA-F]{64}$/.test(value)) {
      bytes = Buffer.from(value, 'hex')
    } else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(value)) {
      const decoded = Buffer.from(value, 'base64')
      if (decoded.length === SECRET_BYTES) bytes = decoded
    } else if (/^[\x21-\x7e]{32}$/.test(value)) {
      bytes = Buffer.from(value, 'ascii')
      ascii = true
    }
  }
  if (bytes === undefined) {
    throw xemsError('FST_XEMS_BAD_SECRET', [option,
      'it must be exactly 32 bytes: a Buffer of 32 bytes, 64 hex characters, base64 of 32 bytes, or 32 printable ASCII characters; ' +
        `${MAKE_ONE}`])
  }
  const weakness = weaknessOf(bytes)
  if (weakness !== null) {
    bytes.fill(0)
    throw xemsError('FST_XEMS_BAD_SECRET', [option, `${weakness}${ascii ? ' (read as 32 ASCII characters)' : ''}; ${MAKE_ONE}`])
  }
  if (ascii && /^[0-9a-fA-F]{32}$/.test(value as string)) {
    bytes.fill(0)
    throw xemsError('FST_XEMS_BAD_SECRET', [option,
      'it is 32 hex characters: that is 16 bytes, not 32, and would be read as ASCII; give 64 hex characters (`openssl rand -hex ' +
        `32\`), or ${MAKE_ONE}`])
  }
  return bytes
}

/** Fewest distinct byte values accepted: 32 random bytes have about 30; fewer than 12 happens with odds below 1e-20. */
const MIN_DISTINCT_BYTES = 12

/** Why 32 bytes are obviously not random, or null. Random bytes pass every check with overwhelming odds. */
function weaknessOf (bytes: Buffer): string | null {
  const distinct = new Set(bytes).size
  if (distinct === 1) return 'all its bytes are the same'
  for (let period = 2; period <= 16; period++) {
    let repeats = true
    for (let i = period; i < bytes.length && repeats; i++) repeats = bytes[i] === bytes[i - period]
    if (repeats) return `it repeats a pattern of ${period} bytes`
  }
  const step = (bytes[1]! - bytes[0]! + 256) % 256
  let run = true
  for (let i = 2; i < bytes.length && run; i++) run = (bytes[i]! - bytes[i - 1]! + 256) % 256 === step
  if (run) return 'its bytes are a run of evenly spaced values'
  if (distinct < MIN_DISTINCT_BYTES) return `it has only ${distinct} distinct bytes`
  return null
}

function keyIdOf (key: Buffer): Buffer {
  return createHash('sha256').update('xems/key-id').update(key).digest().subarray(0, KEY_ID_BYTES)
}

/**
 * A versioned keyring: seals with the first key, opens with whichever key sealed the payload
 * (recognised by its key id), so a secret can rotate while data sealed under the old one still opens.
 */
export class Keyring {
  readonly #keys: Array<{ id: Buffer, key: Buffer }>

  /** `secrets` are 32-byte secrets, newest first; `purpose` separates keys derived for different uses. */
  constructor (secrets: Buffer[], purpose: string, salt?: Buffer) {
    if (secrets.length === 0) throw xemsError('FST_XEMS_BAD_SECRET', ['secret', 'a keyring needs at least one secret'])
    this.#keys = secrets.map((secret) => {
      const key = deriveKey(secret, purpose, salt)
      return { id: keyIdOf(key), key }
    })
  }

  /** Seals `plaintext` under the newest key with a fresh random nonce; `aad` binds it to its place. */
  seal (plaintext: Buffer | string, aad: string): Buffer {
    const { id, key } = this.#keys[0]!
    return sealWith(key, id, plaintext, aad)
  }

  /** Opens a sealed payload; null when it is malformed, tampered with, moved, or sealed by an unknown key. */
  open (sealed: Buffer, aad: string): Buffer | null {
    if (sealed.length < HEADER_BYTES || sealed[0] !== FORMAT_VERSION) return null
    const id = sealed.subarray(1, 1 + KEY_ID_BYTES)
    for (const entry of this.#keys) {
      if (entry.id.equals(id)) return openWith(entry.key, sealed, aad)
    }
    return null
  }

  /** True when `sealed` was sealed by a key other than the newest one (it should be rewritten). */
  isStale (sealed: Buffer): boolean {
    return sealed.length < HEADER_BYTES || !this.#keys[0]!.id.equals(sealed.subarray(1, 1 + KEY_ID_BYTES))
  }
}

function sealWith (key: Buffer, id: Buffer, plaintext: Buffer | string, aad: string): Buffer {
  const nonce = randomBytes(NONCE_BYTES)
  const cipher = createCipheriv('aes-256-gcm', key, nonce)
  cipher.setAAD(Buffer.from(aad, 'utf8'))
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return Buffer.concat([Buffer.from([FORMAT_VERSION]), id, nonce, cipher.getAuthTag(), body])
}

function openWith (key: Buffer, sealed: Buffer, aad: string): Buffer | null {
  const nonceStart = 1 + KEY_ID_BYTES
  const tagStart = nonceStart + NONCE_BYTES
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(nonceStart, tagStart))
    decipher.setAAD(Buffer.from(aad, 'utf8'))
    decipher.setAuthTag(sealed.subarray(tagStart, HEADER_BYTES))
    return Buffer.concat([decipher.update(sealed.subarray(HEADER_BYTES)), decipher.final()])
  } catch {
    return null
  }
}

/**
 * Grace boxes: what lets the holder of a session's previous token learn the token the session rotated
 * to, while that token is within its window, without the store ever holding a usable token.
 *
 * At a rotation from token `T`, the new secret is not drawn on its own: it is derived from `T` and a fresh
 * nonce. `o = SHA-512("xems/grace/v4|" | T | "|" | n)`, where `n` is the text of the box's first 44
 * characters (version 4 and 32 CSPRNG bytes, base64url); the new secret is o's first 256 bits and the
 * box's check its bits 258–385:
 * box = base64url(`version 4 (1 byte) | nonce (32)`) | base64url(check (16)): 49 bytes, 66 characters.
 * Opening recomputes `o` from the presented `T` and the box's nonce and compares the check.
 * - `T` (the whole token, locator and secret) holds a secret of 256 uniformly random bits (or, after a
 *   rotation, a pseudo-random function of such bits and a fresh nonce), so o is a pseudo-random function
 *   keyed by `T`: without `T`, the box (a nonce and a check) says nothing about the new secret, so a dump
 *   of the store gives no token; with `T` but without the box, neither, since the nonce is 256 fresh
 *   bits that only the store keeps.
 * - The check authenticates the whole box: a byte changed in the version or the nonce changes o, one
 *   in the check fails the comparison. A box that does not open gives null, never a wrong token (which
 *   the session would refuse as the theft signal).
 * - Whoever holds `T` and the box learns the new secret: exactly what a box is for, and what the store
 *   allows only while `T` is within its window (afterwards the box is dropped with its entry).
 * One SHA-512 per rotation and per box opened, and no Buffer but the nonce's: a fraction of what
 * sealing a random secret under a pad and a tag cost (bench/micro.ts).
 */
const GRACE_VERSION = 4
const GRACE_LABEL = 'xems/grace/v4|'
/** `version | nonce`: 33 bytes, whose base64url (44 characters) is a whole prefix of the box's. */
const GRACE_HEAD_BYTES = 33
const GRACE_HEAD_LENGTH = 44
/** The box: 49 bytes, 66 base64url characters. */
export const GRACE_BOX_LENGTH = 66
// The version byte, 4 = 000001|00, makes the first character 'B' and the second one of 'A'..'P'.
const HEAD_FIRST = 0x42
const HEAD_SECOND_MIN = 0x41
const HEAD_SECOND_MAX = 0x50

/** The new secret (canonical base64url of o's first 32 bytes) and the check (of o's bits 258–385), from o as base64url. */
function secretAndCheck (holderToken: string, head: string): { secret: string, check: string } {
  const o = hash('sha512', GRACE_LABEL + holderToken + '|' + head, 'base64url')
  // 42 characters carry bits 0–251; the 43rd bits 252–257, of which the secret keeps 252–255.
  // The check: 21 characters from bit 258 on (126 bits), then one carrying 2 more: 16 bytes, canonical.
  return { secret: o.slice(0, 42) + TOP_FOUR_BITS[o.charCodeAt(42)]!, check: o.slice(43, 64) + TOP_TWO_BITS[o.charCodeAt(64)]! }
}

/**
 * A rotation from `holderToken`: the new token's secret (as generateToken makes them: 43 base64url
 * characters, canonical) and the grace box that gives it back to the holder of `holderToken` only.
 */
export function successorOf (holderToken: string): { secret: string, box: string } {
  const head = randomBase64urlWith(GRACE_VERSION, GRACE_HEAD_BYTES)
  const { secret, check } = secretAndCheck(holderToken, head)
  return { secret, box: head + check }
}

/** Opens a grace box with the token it was made from: the secret that token rotated to, or null. */
export function openAsTokenHolder (holderToken: string, box: string): string | null {
  if (typeof holderToken !== 'string' || typeof box !== 'string' || box.length !== GRACE_BOX_LENGTH) return null
  const second = box.charCodeAt(1)
  if (box.charCodeAt(0) !== HEAD_FIRST || second < HEAD_SECOND_MIN || second > HEAD_SECOND_MAX) return null
  const { secret, check } = secretAndCheck(holderToken, box.slice(0, GRACE_HEAD_LENGTH))
  // Compared in full whatever differs (the check is no secret of anyone else's, but nothing here leaks time).
  let diff = 0
  for (let i = 0; i < check.length; i++) diff |= check.charCodeAt(i) ^ box.charCodeAt(GRACE_HEAD_LENGTH + i)
  return diff === 0 ? secret : null
}
