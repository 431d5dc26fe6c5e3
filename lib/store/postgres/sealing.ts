import { createHash } from 'node:crypto'
import { Keyring } from '../../crypto/cipher.js'
import type { EncodedData } from '../contract.js'

/** The HKDF purpose of the keys that seal what PostgresStore writes. */
export const POSTGRES_SEAL_PURPOSE = 'xems/postgres/v1'

/** The name a user id, value key or counter key is stored under: a labelled SHA-256, never the name itself. */
export function digest (label: string, value: string): string {
  return createHash('sha256').update(label).update('\u0000').update(value, 'utf8').digest('base64url')
}

/**
 * What PostgresStore seals and how: AES-256-GCM under the keyring of its secrets, with an AAD that binds
 * each payload to the schema, the table prefix and its place (`session`/row id/..., `value`/sandbox/key,
 * `canary`/key id).
 */
export class PostgresSealing {
  readonly #keyring: Keyring
  /** One keyring per secret, newest first, with the key id its canary row is named by. */
  readonly rings: Array<{ id: string, ring: Keyring }>
  readonly #schema: string
  readonly #prefix: string

  constructor (secrets: Buffer[], schema: string, prefix: string) {
    this.#schema = schema
    this.#prefix = prefix
    this.#keyring = new Keyring(secrets, POSTGRES_SEAL_PURPOSE)
    this.rings = secrets.map((secret) => {
      const ring = new Keyring([secret], POSTGRES_SEAL_PURPOSE)
      return { id: ring.seal('', 'key-id').subarray(1, 5).toString('hex'), ring }
    })
  }

  aad (...parts: Array<string | number>): string {
    return JSON.stringify([this.#schema, this.#prefix, ...parts])
  }

  seal (plain: string | Buffer, ...place: Array<string | number>): Buffer {
    return this.#keyring.seal(plain, this.aad(...place))
  }

  open (sealed: Buffer, ...place: Array<string | number>): Buffer | null {
    return this.#keyring.open(sealed, this.aad(...place))
  }

  /** Sealed under an older secret: to be rewritten. */
  isStale (sealed: Buffer): boolean {
    return this.#keyring.isStale(sealed)
  }

  /** The user id (or nothing) sealed to the row's id, sandbox, idle ttl and times. */
  binding (
    id: string, sandbox: string, idleTtl: number, createdAt: number, absoluteExpiresAt: number, userId: string | undefined
  ): Buffer {
    return this.seal(userId === undefined ? '' : `u${userId}`, 'session', id, sandbox, idleTtl, createdAt, absoluteExpiresAt)
  }

  openBinding (id: string, sandbox: string, idleTtl: number, createdAt: number, absoluteExpiresAt: number, sealed: Buffer):
  { userId: string | undefined, stale: boolean } | null {
    const plain = this.open(sealed, 'session', id, sandbox, idleTtl, createdAt, absoluteExpiresAt)
    if (plain === null) return null
    const text = plain.toString('utf8')
    return { userId: text === '' ? undefined : text.slice(1), stale: this.#keyring.isStale(sealed) }
  }

  /** The data as a list of [key, JSON text] pairs (no object keys in transit: `__proto__` stays a key). */
  sealData (id: string, data: EncodedData): Buffer {
    return this.seal(JSON.stringify(Object.entries(data)), 'session', id, 'data')
  }

  openData (id: string, sealed: Buffer): { data: EncodedData, stale: boolean } | null {
    const plain = this.open(sealed, 'session', id, 'data')
    if (plain === null) return null
    let pairs: unknown
    try { pairs = JSON.parse(plain.toString('utf8')) } catch { return null }
    if (!Array.isArray(pairs)) return null
    const data = Object.create(null) as EncodedData
    for (const pair of pairs as unknown[]) {
      if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') return null
      data[pair[0]] = pair[1]
    }
    return { data, stale: this.#keyring.isStale(sealed) }
  }
}
