import type { MemorySession } from './record.js'
import { ShardedMap } from './sharded-map.js'

/** The sessions of each user in a MemoryStore (listUser, revokeUser, maxSessionsPerUser). */
export class UserIndex {
  /** userId → the id of its one session, or a set of ids once it has several (most users have one). */
  readonly #users = new ShardedMap<string | Set<string>>()

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

  /** Takes `session` out of its user's sessions (nothing without a user). */
  remove (session: MemorySession): void {
    if (session.userId === undefined) return
    const ids = this.#users.get(session.userId)
    if (ids === undefined) return
    if (typeof ids === 'string') {
      if (ids === session.id) this.#users.delete(session.userId)
      return
    }
    ids.delete(session.id)
    if (ids.size === 1) this.#users.set(session.userId, ids.values().next().value!)
  }
}
