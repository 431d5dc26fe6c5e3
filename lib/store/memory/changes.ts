import {
  encodeAllData, encodeCore, encodeCounter, encodeCounterRemoved, encodeDataKey, encodeSessionRemoved, encodeTouch,
  encodeValue, encodeValueRemoved, type SessionCore
} from '../vault/entries.js'
import type { Vault } from '../vault/vault.js'
import { absoluteOf, createdOf, lastSeenOf, type MemorySession, type MemoryState } from './record.js'

/** What an operation changed of a session, for the journal; a larger one includes the smaller. */
const Change = { Touch: 0, Presented: 1, Core: 2 } as const
type Change = typeof Change[keyof typeof Change]

/**
 * What the current operation of a persistent MemoryStore changed, noted as it runs and, once it has
 * run, encoded as the resulting states (vault entries) and handed to the vault's journal.
 */
export class ChangeTracker {
  /** What the current operation changed, per session id (see Change). */
  readonly #dirtySessions = new Map<string, Change>()
  /** id → the data keys changed, or null for all of them. */
  readonly #dirtyData = new Map<string, Set<string> | null>()
  readonly #dirtyValues = new Set<string>()
  readonly #dirtyCounters = new Set<string>()

  /** Fields of a session changed (journaled and waited for). */
  core (id: string): void {
    this.#dirtySessions.set(id, Change.Core)
  }

  /**
   * A token was presented for the first time (journaled, not waited for: lost in a crash, the previous
   * token keeps its unseen window instead of the grace period; it never makes a thief of anyone).
   */
  presented (id: string): void {
    if ((this.#dirtySessions.get(id) ?? Change.Touch) < Change.Presented) this.#dirtySessions.set(id, Change.Presented)
  }

  touched (id: string): void {
    if (!this.#dirtySessions.has(id)) this.#dirtySessions.set(id, Change.Touch)
  }

  /** A data key of a session changed; `key` null: all its data was replaced. */
  data (id: string, key: string | null): void {
    const keys = this.#dirtyData.get(id)
    if (key === null) this.#dirtyData.set(id, null)
    else if (keys === undefined) this.#dirtyData.set(id, new Set([key]))
    else if (keys !== null) keys.add(key)
  }

  value (key: string): void {
    this.#dirtyValues.add(key)
  }

  counter (key: string): void {
    this.#dirtyCounters.add(key)
  }

  /** Encodes the resulting state of everything the operation changed and queues it in the journal. */
  persist (state: MemoryState, vault: Vault): Promise<void> | undefined {
    if (this.#dirtySessions.size === 0 && this.#dirtyData.size === 0 && this.#dirtyValues.size === 0 && this.#dirtyCounters.size === 0) {
      return undefined
    }
    const entries: string[] = []
    // A change that only refreshed lastSeenAt is not waited for: lost in a crash, it can only make
    // the session expire earlier, never later.
    let durable = this.#dirtyData.size > 0 || this.#dirtyValues.size > 0 || this.#dirtyCounters.size > 0
    // Order matters for replay: a session's core comes before its data.
    for (const [id, change] of this.#dirtySessions) {
      const session = state.sessions.get(id)
      if (session === undefined) entries.push(encodeSessionRemoved(id))
      else if (change === Change.Touch) entries.push(encodeTouch(id, lastSeenOf(session)))
      else entries.push(encodeCore(coreOf(id, session)))
      durable ||= change === Change.Core || session === undefined
    }
    for (const [id, keys] of this.#dirtyData) {
      const session = state.sessions.get(id)
      if (session === undefined) continue
      if (keys === null) entries.push(encodeAllData(id, session.data()))
      else for (const key of keys) entries.push(encodeDataKey(id, key, session.dataValue(key) ?? null))
    }
    for (const key of this.#dirtyValues) {
      const value = state.values.get(key)
      entries.push(value === undefined ? encodeValueRemoved(key) : encodeValue(key, value.value, value.expiresAt))
    }
    for (const key of this.#dirtyCounters) {
      const counter = state.counters.get(key)
      entries.push(counter === undefined ? encodeCounterRemoved(key) : encodeCounter(key, counter.count, counter.resetAt))
    }
    this.#dirtySessions.clear()
    this.#dirtyData.clear()
    this.#dirtyValues.clear()
    this.#dirtyCounters.clear()
    return vault.append(entries.join(','), durable)
  }
}

/** A session's fields and rotation state as the vault encodes them. */
export function coreOf (id: string, session: MemorySession): SessionCore {
  return {
    id,
    sandbox: session.sandbox,
    userId: session.userId ?? null,
    createdAt: createdOf(session),
    lastSeenAt: lastSeenOf(session),
    idleTtl: session.idleTtl,
    absoluteExpiresAt: absoluteOf(session),
    cur: session.cur,
    seen: session.seen,
    past: session.past,
    migrations: session.migrations
  }
}
