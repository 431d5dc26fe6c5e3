import type { SessionInfo } from '../contract.js'
import type { ChangeTracker } from './changes.js'
import { type MemorySession, sessionExpiresAt, sessionInfo } from './record.js'
import { ShardedMap } from './sharded-map.js'
import { UserIndex } from './users.js'

/**
 * The sessions of a MemoryStore, by id and by user (UserIndex): finding a live one, ending them (one,
 * or a user's), listing a user's. The store owns one and calls it within its operations: each method
 * is one synchronous step, and notes what it changed in the store's change tracker (null without
 * persistence); the store notes its own changes to a session through it too.
 */
export class MemorySessions {
  /** Session id → its record. */
  readonly byId = new ShardedMap<MemorySession>()
  readonly users = new UserIndex((id, now) => this.live(id, now), (id, session) => { this.remove(id, session) })
  /** What the current operation changed, for the journal; null without persistence. */
  readonly #changes: ChangeTracker | null

  constructor (changes: ChangeTracker | null) {
    this.#changes = changes
  }

  /** Ends session `id` if it is a live session of the user; true if it did. */
  revokeUserSession (userId: string, id: string, now: number): boolean {
    const session = this.live(id, now)
    if (session === null || session.userId !== userId) return false
    this.remove(id, session)
    return true
  }

  /** Ends every session of the user but `exceptId`; answers how many of them were live. */
  revokeUser (userId: string, now: number, exceptId?: string): number {
    let ended = 0
    for (const id of this.users.ids(userId)) {
      if (id === exceptId) continue
      const session = this.byId.get(id)!
      if (sessionExpiresAt(session) > now) ended++
      this.remove(id, session)
    }
    return ended
  }

  /** The user's live sessions. */
  listUser (userId: string, now: number): SessionInfo[] {
    const infos: SessionInfo[] = []
    for (const id of this.users.ids(userId)) {
      const session = this.live(id, now)
      if (session !== null) infos.push(sessionInfo(id, session, userId))
    }
    return infos
  }

  // ---- changes, noted for the journal with persistence ----

  /** Fields of a session changed (journaled and waited for). */
  coreChanged (id: string): void {
    if (this.#changes !== null) this.#changes.core(id)
  }

  /** A token was presented for the first time (journaled, not waited for). */
  presented (id: string): void {
    if (this.#changes !== null) this.#changes.presented(id)
  }

  touched (id: string): void {
    if (this.#changes !== null) this.#changes.touched(id)
  }

  /** A data key of a session changed; `key` null: all its data was replaced. */
  dataChanged (id: string, key: string | null): void {
    if (this.#changes !== null) this.#changes.data(id, key)
  }

  /** The session if it is live at `now` (an expired one is removed), else null. */
  live (id: string, now: number): MemorySession | null {
    const session = this.byId.get(id)
    if (session === undefined) return null
    if (sessionExpiresAt(session) <= now) {
      this.remove(id, session)
      return null
    }
    return session
  }

  /** Ends a session within an operation (journaled). */
  remove (id: string, session: MemorySession): void {
    this.forget(id, session)
    this.coreChanged(id)
  }

  /** Drops a session from memory without journaling it (expiry sweeps, replay). */
  forget (id: string, session: MemorySession): void {
    this.byId.delete(id)
    this.users.remove(id, session)
  }
}
