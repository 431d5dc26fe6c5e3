import { createCipheriv, createDecipheriv, createHash, hash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'
import { xemsError } from '../errors.js'

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
/** For a base64url character of value v, the character of value v & 0b110000: its top 2 bits alone. */
const TOP_TWO_BITS: string[] = []
for (let v = 0; v < 64; v++) TOP_TWO_BITS[BASE64URL.charCodeAt(v)] = BASE64URL[v & 0x30]!

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
 * Grace boxes: the token a session rotated to, sealed for the holder of the token it rotated from.
 *
 * `k = SHA-512("xems/grace/v3|" | old token)` gives a 32-byte pad and a 32-byte MAC key;
 * box = `version 3 (1 byte) | new token XOR pad (32) | SHA-256(MAC key | version | ciphertext)[0..16]`.
 * The old token is 256 uniformly random bits used as a key once, so a hash of a fixed label and it is
 * a pseudo-random function of it (HMAC's nesting guards short or reused keys; neither occurs here), and
 * the tag is a keyed hash over a fixed-length message (no length extension applies).
 * Each token is rotated away at most once, so each key seals exactly one box: the pad is used once and
 * the tag, over a fixed-length message, authenticates every byte. (Concurrent rotations from one token
 * may seal two boxes under one key; the store keeps one, and the other box's token is never issued nor
 * revealed, so the XOR of the two discloses nothing.) Two one-shot hashes per rotation instead of
 * HKDF + AES-GCM: a small fraction of the cost (bench/micro.ts).
 */
const GRACE_VERSION = 3
const GRACE_LABEL = 'xems/grace/v3|'
const GRACE_TOKEN_BYTES = 32
const GRACE_TAG_BYTES = 16
const GRACE_BOX_BYTES = 1 + GRACE_TOKEN_BYTES + GRACE_TAG_BYTES

/**
 * `keys` as bytes: the 64 bytes of SHA-512, read from the hash's latin1 text into a pooled Buffer. (A
 * digest asked for as a Buffer gets an ArrayBuffer of its own: several times the cost of the hash.)
 */
function graceKeys (holderToken: string): Buffer {
  return Buffer.from(hash('sha512', GRACE_LABEL + holderToken, 'binary'), 'latin1')
}

/** The tag over version and ciphertext (`box` without its tag), keyed with the second half of `keys`: 16 bytes as latin1. */
function graceTag (keys: Buffer, box: Buffer): string {
  const message = Buffer.allocUnsafe(GRACE_TOKEN_BYTES + 1 + GRACE_TOKEN_BYTES)
  keys.copy(message, 0, GRACE_TOKEN_BYTES, 2 * GRACE_TOKEN_BYTES)
  box.copy(message, GRACE_TOKEN_BYTES, 0, 1 + GRACE_TOKEN_BYTES)
  const tag = hash('sha256', message, 'binary').slice(0, GRACE_TAG_BYTES)
  message.fill(0)
  return tag
}

/**
 * Seals the token a session rotated to for the holder of the token it rotated from. Only a client that
 * holds the old token can open it, so the store keeps no usable token even during grace, and neither a
 * store dump nor the server's secret reveals one. `secretToken` is a token as generateToken makes it.
 */
export function sealForTokenHolder (holderToken: string, secretToken: string): string {
  const raw = Buffer.from(secretToken, 'base64url')
  if (raw.length !== GRACE_TOKEN_BYTES) throw new TypeError('sealForTokenHolder: not a session token')
  const keys = graceKeys(holderToken)
  const box = Buffer.allocUnsafe(GRACE_BOX_BYTES)
  box[0] = GRACE_VERSION
  for (let i = 0; i < GRACE_TOKEN_BYTES; i++) box[1 + i] = raw[i]! ^ keys[i]!
  box.write(graceTag(keys, box), 1 + GRACE_TOKEN_BYTES, GRACE_TAG_BYTES, 'latin1')
  keys.fill(0)
  return box.toString('base64url')
}

/** Opens what sealForTokenHolder sealed, with the old token; null when it does not open. */
export function openAsTokenHolder (holderToken: string, box: string): string | null {
  const sealed = Buffer.from(box, 'base64url')
  if (sealed.length !== GRACE_BOX_BYTES || sealed[0] !== GRACE_VERSION || sealed.toString('base64url') !== box) return null
  const keys = graceKeys(holderToken)
  if (!timingSafeEqual(Buffer.from(graceTag(keys, sealed), 'latin1'), sealed.subarray(1 + GRACE_TOKEN_BYTES))) {
    keys.fill(0)
    return null
  }
  const token = Buffer.allocUnsafe(GRACE_TOKEN_BYTES)
  for (let i = 0; i < GRACE_TOKEN_BYTES; i++) token[i] = sealed[1 + i]! ^ keys[i]!
  keys.fill(0)
  const text = token.toString('base64url')
  token.fill(0)
  return text
}
