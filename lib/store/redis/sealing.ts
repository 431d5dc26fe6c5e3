/**
 * The sealing of what RedisStore writes: every payload is sealed with AES-256-GCM (the keyring of the
 * store's secrets) before it leaves the process, bound to its place (prefix, key, field) by the
 * associated data, so a value copied to another place does not open.
 */
import type { Keyring } from '../../crypto/cipher.js'
import type { EncodedData, StoredSession } from '../contract.js'
import { dataPairOf, digest, intOf, type Reply } from './codec.js'
import { OpenedSessions } from './opened-sessions.js'
import type { Arg } from './scripts/index.js'

/** A sealed field of one hash to rewrite under the newest key: field, old, new. */
export type Reseal = [field: string, old: Buffer, fresh: Buffer]

/** Opened values kept (a cache: a miss costs one AES-256-GCM open; about 2 MB at most). */
const OPENED_MAX = 4096

export class RedisSealer {
  readonly #prefix: string
  readonly #keyring: Keyring
  /** Sealed bytes and place → what they opened to, oldest first. */
  readonly #opened = new Map<string, Buffer>()
  /** Whole sessions, by record id and the exact fields they opened from. */
  readonly #sessions = new OpenedSessions()

  constructor (prefix: string, keyring: Keyring) {
    this.#prefix = prefix
    this.#keyring = keyring
  }

  /** Whether a sealed value was sealed under an older key than the newest. */
  isStale (sealed: Buffer): boolean {
    return this.#keyring.isStale(sealed)
  }

  aad (...parts: Array<string | number>): string {
    return JSON.stringify([this.#prefix, ...parts])
  }

  seal (plain: string | Buffer, ...place: Array<string | number>): Buffer {
    return this.#keyring.seal(plain, this.aad(...place))
  }

  /**
   * Opens a sealed value at its place; null when it does not open. The result is shared: read it, never
   * change it. A session's fields are read on every request and mostly unchanged between them, so the
   * last OPENED_MAX session fields that opened are kept by their exact sealed bytes and place: the same bytes at
   * the same place opened under this store's keyring before, and open to the same plaintext again.
   */
  open (sealed: Buffer, ...place: Array<string | number>): Buffer | null {
    const aad = this.aad(...place)
    // Values of the kv sandboxes (MFA records among them) are opened when asked for and not kept.
    if (place[0] !== 'session') return this.#keyring.open(sealed, aad)
    const key = aad + '\u0000' + sealed.toString('latin1')
    const known = this.#opened.get(key)
    if (known !== undefined) return known
    const plain = this.#keyring.open(sealed, aad)
    if (plain === null) return null
    if (this.#opened.size >= OPENED_MAX) this.#opened.delete(this.#opened.keys().next().value!)
    this.#opened.set(key, plain)
    return plain
  }

  sandboxSeal (id: string, sandbox: string, idleTtl: number): Buffer {
    return this.seal('', 'session', id, 'sandbox', sandbox, idleTtl)
  }

  /** One top-level data key: field `d:<digest of the key>`, value sealing the key's name and its JSON text. */
  dataPair (id: string, key: string, json: string): [string, Buffer] {
    const field = digest('data', key)
    const name = Buffer.from(key, 'utf8')
    const length = Buffer.alloc(4)
    length.writeUInt32BE(name.length)
    return [`d:${field}`, this.seal(Buffer.concat([length, name, Buffer.from(json, 'utf8')]), 'session', id, 'data', field)]
  }

  dataPairs (id: string, data: EncodedData): Arg[] {
    const pairs: Arg[] = []
    for (const [key, json] of Object.entries(data)) pairs.push(...this.dataPair(id, key, json))
    return pairs
  }

  /**
   * Opens the session hash the resolve script read (HGETALL, before its own writes: lastSeenAt is `now`).
   * Null when any part does not open (tampered with, moved, or sealed under a key no longer in the
   * keyring): such a session is not trusted, so it does not resolve. A session read again with the same
   * bytes in every field it opened from is taken from OpenedSessions.
   */
  openSession (id: string, all: Reply[], now: number): { session: StoredSession, reseal: Reseal[] } | null {
    const known = this.#sessions.find(id, all, now)
    if (known !== null) return { session: known, reseal: [] }
    let sb: Buffer | undefined
    let ca: Buffer | undefined
    let it: Buffer | undefined
    let ax: Buffer | undefined
    let u: Buffer | undefined
    let ms: Buffer | undefined
    let mt: Buffer | undefined
    let g: Buffer | undefined
    const data: Array<[string, Buffer]> = []
    for (let i = 0; i + 1 < all.length; i += 2) {
      const name = all[i] as Buffer
      const value = all[i + 1] as Buffer
      // Field names are ASCII: compare the first bytes before making strings.
      if (name[0] === 0x64 && name[1] === 0x3a) { data.push([name.toString('latin1', 2), value]); continue }
      switch (name.toString('latin1')) {
        case 'sb': sb = value; break
        case 'ca': ca = value; break
        case 'it': it = value; break
        case 'ax': ax = value; break
        case 'u': u = value; break
        case 'ms': ms = value; break
        case 'mt': mt = value; break
        case 'g': g = value; break
      }
    }
    if (sb === undefined) return null
    const sandbox = sb.toString('utf8')
    const createdAt = intOf(ca)
    const idleTtl = intOf(it)
    const absoluteExpiresAt = intOf(ax)
    const reseal: Reseal[] = []
    const check = (field: string, sealed: Buffer | undefined, ...place: Array<string | number>): Buffer | null => {
      if (sealed === undefined) return null
      const opened = this.open(sealed, ...place)
      if (opened === null) return null
      if (this.#keyring.isStale(sealed)) reseal.push([field, sealed, this.seal(opened, ...place)])
      return opened
    }
    if (check('ms', ms, 'session', id, 'sandbox', sandbox, idleTtl) === null) return null
    if (check('mt', mt, 'session', id, 'times', createdAt, absoluteExpiresAt) === null) return null
    const session: StoredSession = {
      id,
      sandbox,
      data: Object.create(null) as EncodedData,
      createdAt,
      lastSeenAt: now,
      idleTtl,
      absoluteExpiresAt,
      // How many migrations (written by the migrate script; none yet: no field)
      migrations: g === undefined ? 0 : intOf(g)
    }
    if (u !== undefined) {
      const userId = check('u', u, 'session', id, 'user')
      if (userId === null) return null
      session.userId = userId.toString('utf8')
    }
    for (const [field, sealed] of data) {
      const plain = check(`d:${field}`, sealed, 'session', id, 'data', field)
      const pair = plain === null ? null : dataPairOf(plain, field)
      if (pair === null) return null
      session.data[pair[0]] = pair[1]
    }
    if (reseal.length === 0) this.#sessions.remember(id, all, session)
    return { session, reseal }
  }

  /** Drops what is kept of a session this store ended. */
  forget (id: string): void {
    this.#sessions.forget(id)
  }

  /** One sealed data field as [key, JSON text]; null when absent or it does not open. */
  openDataField (id: string, field: string, sealed: Buffer | null): [string, string] | null {
    if (sealed === null) return null
    const plain = this.open(sealed, 'session', id, 'data', field)
    return plain === null ? null : dataPairOf(plain, field)
  }
}
