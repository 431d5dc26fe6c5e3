/**
 * The sessions RedisStore opened lately, each with the exact fields it was opened from: a session read
 * again with the same bytes in every field that opening uses is the same session, without the work of
 * opening its fields one by one (their places, the per-field cache, the AES-256-GCM of a miss). Any
 * changed byte, added or missing field, or field in another order is a miss, and the session is opened
 * field by field as before, so a value tampered with in Redis is caught on the very next read.
 */
import type { StoredSession } from '../contract.js'
import type { Reply } from './codec.js'

/** Sessions kept (a cache: a miss costs opening the session field by field): each its sealed fields and its data. */
const OPENED_SESSIONS_MAX = 4096

// Fields the resolve script changes on every request and that opening does not read: lastSeenAt (ls),
// the expiry mark (xp), the current token key (k), its presented flag (s) and the earlier tokens (p).
function isVolatile (name: Buffer): boolean {
  if (name.length === 1) return name[0] === 0x6b || name[0] === 0x73 || name[0] === 0x70
  return name.length === 2 && ((name[0] === 0x6c && name[1] === 0x73) || (name[0] === 0x78 && name[1] === 0x70))
}

interface Opened {
  /** Name, value, name, value...: every field of the hash but the volatile ones, in the order read. */
  fields: Buffer[]
  session: StoredSession
}

export class OpenedSessions {
  /** By record id, oldest first. */
  readonly #byId = new Map<string, Opened>()

  /**
   * The session `id` opened to from exactly these fields (`all`, as HGETALL read it), as of `now`; null
   * unless every field but the volatile ones is the same, byte for byte, in the same order. The session
   * returned is a copy: a caller may change it.
   */
  find (id: string, all: Reply[], now: number): StoredSession | null {
    const known = this.#byId.get(id)
    if (known === undefined) return null
    const { fields } = known
    let j = 0
    for (let i = 0; i + 1 < all.length; i += 2) {
      const name = all[i] as Buffer
      if (isVolatile(name)) continue
      if (j + 1 >= fields.length || !name.equals(fields[j]!) || !(all[i + 1] as Buffer).equals(fields[j + 1]!)) return null
      j += 2
    }
    if (j !== fields.length) return null
    const { session } = known
    return { ...session, lastSeenAt: now, data: Object.assign(Object.create(null), session.data) }
  }

  /** Keeps what `all` opened to (a session whose fields all opened under the newest key). */
  remember (id: string, all: Reply[], session: StoredSession): void {
    const fields: Buffer[] = []
    for (let i = 0; i + 1 < all.length; i += 2) {
      const name = all[i] as Buffer
      // Copies: a reply's buffers are views of the socket's read buffer, which they would keep alive.
      if (!isVolatile(name)) fields.push(Buffer.from(name), Buffer.from(all[i + 1] as Buffer))
    }
    this.#byId.delete(id)
    if (this.#byId.size >= OPENED_SESSIONS_MAX) this.#byId.delete(this.#byId.keys().next().value!)
    this.#byId.set(id, { fields, session: { ...session, data: Object.assign(Object.create(null), session.data) } })
  }

  /** Forgets a session (one this store ended: its data leaves the heap with it). */
  forget (id: string): void {
    this.#byId.delete(id)
  }
}
