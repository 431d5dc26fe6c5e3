import type { LimitResult, UserLimit } from '../contract.js'
import type { MemorySession } from './record.js'
import { ShardedMap } from './sharded-map.js'

/** The sessions of each user in a MemoryStore (listUser, revokeUser) and the cap on them (maxSessionsPerUser). */
export class UserIndex {
  /** userId → the id of its one session, or a set of ids once it has several (most users have one). */
  readonly #users = new ShardedMap<string | Set<string>>()
  /** The store's: a session if it is live at `now` (an expired one is removed), else null. */
  readonly #liveSession: (id: string, now: number) => MemorySession | null
  /** The store's: ends a session within the operation (journaled). */
  readonly #removeSession: (id: string, session: MemorySession) => void

  constructor (
    liveSession: (id: string, now: number) => MemorySession | null,
    removeSession: (id: string, session: MemorySession) => void
  ) {
    this.#liveSession = liveSession
    this.#removeSession = removeSession
  }

  /** A copy of the ids of a user's sessions (callers remove sessions while they go through them). */
  ids (userId: string): string[] {
    const ids = this.#users.get(userId)
    return ids === undefined ? [] : typeof ids === 'string' ? [ids] : [...ids]
  }

  add (userId: string, id: string): void {
    const ids = this.#users.get(userId)
    if (ids === undefined || ids === id) this.#users.set(userId, id)
    else if (typeof ids === 'string') this.#users.set(userId, new Set([ids, id]))
    else ids.add(id)
  }

  /** Takes session `id` out of its user's sessions (nothing without a user). */
  remove (id: string, session: MemorySession): void {
    const userId = session.userId
    if (userId === undefined) return
    const ids = this.#users.get(userId)
    if (ids === undefined) return
    if (typeof ids === 'string') {
      if (ids === id) this.#users.delete(userId)
      return
    }
    ids.delete(id)
    if (ids.size === 1) this.#users.set(userId, ids.values().next().value!)
  }

  /**
   * The cap of a user, within the operation that gives session `id` the user: counts the user's other
   * live sessions and refuses, or ends the least recently created ones (ties by id) so that `max` are
   * left with the new one. Part of one synchronous section with the write that follows.
   */
  admit (userId: string, id: string, limit: UserLimit, now: number): LimitResult {
    const live: Array<{ id: string, session: MemorySession }> = []
    for (const other of this.ids(userId)) {
      if (other === id) continue
      const session = this.#liveSession(other, now)
      if (session !== null) live.push({ id: other, session })
    }
    if (live.length < limit.max) return { status: 'admitted', ended: [] }
    if (limit.onLimit === 'refuse') return { status: 'refused' }
    live.sort((a, b) => a.session.created - b.session.created || (a.id < b.id ? -1 : 1))
    const ended = live.slice(0, live.length - limit.max + 1)
    for (const { id, session } of ended) this.#removeSession(id, session)
    return { status: 'admitted', ended: ended.map((entry) => entry.id) }
  }
}
