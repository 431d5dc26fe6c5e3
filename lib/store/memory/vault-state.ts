import { decodeEntry, encodeAllData, encodeCore, encodeCounter, encodeValue } from '../vault/entries.js'
import type { VaultState } from '../vault/vault.js'
import { coreOf } from './changes.js'
import { MemorySession, seen, sessionExpiresAt, setTimes, small, type MemoryState } from './record.js'

/**
 * The state of a MemoryStore as its vault sees it: entries read back at start-up are replayed into
 * the maps, expired ones dropped once everything is read, and the live state scanned for a snapshot.
 */
export function vaultStateOf (state: MemoryState, clock: () => number): VaultState {
  return {
    apply: (entry) => { applyEntry(state, entry) },
    loaded: () => { dropExpired(state, clock()) },
    scan: () => scan(state, clock)
  }
}

/** Replays one vault entry (a resulting state), as loading does. */
function applyEntry (state: MemoryState, raw: unknown): void {
  const entry = decodeEntry(raw)
  switch (entry.tag) {
    case 'S': {
      const core = entry.core
      const session = state.sessions.get(core.id)
      if (session === undefined) {
        const id = core.id
        const created = MemorySession.of(core.sandbox, core.idleTtl, core.userId ?? undefined, core.cur, core.seen, core.past, {},
          core.createdAt, core.lastSeenAt, core.absoluteExpiresAt, core.migrations)
        if (core.userId !== null) state.indexUser(core.userId, id)
        state.sessions.set(id, created)
        break
      }
      session.sandbox = core.sandbox
      setTimes(session, core.createdAt, core.lastSeenAt, core.absoluteExpiresAt)
      session.idleTtl = small(core.idleTtl)
      session.cur = core.cur
      session.seen = core.seen
      session.past = core.past
      session.migrations = core.migrations
      if ((core.userId ?? undefined) !== session.userId) {
        state.unindexUser(core.id, session)
        session.userId = undefined
        if (core.userId !== null) {
          session.userId = core.userId
          state.indexUser(core.userId, core.id)
        }
      }
      break
    }
    case 'T': {
      const session = state.sessions.get(entry.id)
      if (session !== undefined) seen(session, entry.lastSeenAt)
      break
    }
    case 'D': {
      const session = state.sessions.get(entry.id)
      if (session !== undefined) state.forgetSession(entry.id, session)
      break
    }
    case 'A': {
      const session = state.sessions.get(entry.id)
      if (session !== undefined) session.setData(entry.data)
      break
    }
    case 'P': {
      const session = state.sessions.get(entry.id)
      if (session === undefined) break
      // A computed key is an own key, `__proto__` too.
      session.patchData({ [entry.key]: entry.value })
      break
    }
    case 'V':
      state.values.set(entry.key, { value: entry.value, expiresAt: entry.expiresAt })
      break
    case 'X':
      state.values.delete(entry.key)
      break
    case 'C':
      state.counters.set(entry.key, { count: entry.count, resetAt: entry.resetAt })
      break
    case 'Z':
      state.counters.delete(entry.key)
      break
  }
}

/** Drops everything expired at `now` (after loading, so that it is not written back). */
function dropExpired (state: MemoryState, now: number): void {
  for (const [id, session] of [...state.sessions.entries()]) if (sessionExpiresAt(session) <= now) state.forgetSession(id, session)
  for (const [key, value] of state.values) if (value.expiresAt <= now) state.values.delete(key)
  for (const [key, counter] of state.counters) if (counter.resetAt <= now) state.counters.delete(key)
}

/**
 * The live state as vault entries, for a snapshot; expired entries are left out. The entries of one
 * session come as one item, read in one synchronous step, even when the snapshot is written across
 * several turns of the event loop.
 */
function * scan (state: MemoryState, clock: () => number): Generator<string> {
  const now = clock()
  for (const [id, session] of state.sessions.entries()) {
    if (sessionExpiresAt(session) <= now) continue
    yield encodeCore(coreOf(id, session)) + ',' + encodeAllData(id, session.data())
  }
  for (const [key, value] of state.values) {
    if (value.expiresAt > now) yield encodeValue(key, value.value, value.expiresAt)
  }
  for (const [key, counter] of state.counters) {
    if (counter.resetAt > now) yield encodeCounter(key, counter.count, counter.resetAt)
  }
}
