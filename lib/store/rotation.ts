import { MAX_PAST_TOKENS } from './contract.js'

/**
 * The rotation rules, as one small state per session that a store keeps in the session's record and
 * changes atomically. MemoryStore runs these functions; RedisStore runs the same rules in Lua
 * (redis/scripts/), and the conformance suite holds every store to them.
 *
 * A session has one current token and at most MAX_PAST_TOKENS earlier ones that still work, each until
 * its own deadline `until`:
 * - A rotated token works while nobody has presented its successor, for the unseen window (a lost
 *   response, a backlog, a commit whose answer never arrived); it is answered with the current token.
 * - The first time the successor is presented, the rotated token's deadline becomes that moment plus
 *   the grace period (requests still in flight).
 * - A token retired by a migration (regenerate, pending → active) answers "no session" until its
 *   deadline: it never reaches the migrated session. (At most MAX_RETIRED_TOKENS are kept; one dropped
 *   beyond that is the theft signal: the bound fails closed.)
 * - The token the session's latest change (its last rotation or migration) replaced, presented after its
 *   deadline while the current token has never been presented, ends the session quietly: nobody has
 *   presented the session's token since that change, so there is no theft to signal (a lost response or
 *   a lost migration answer, then silence), but whoever holds the unpresented current token (a thief who
 *   rotated a copied token once, then waited) must not keep the session either. The honest client loses
 *   nothing: its token no longer opens the session in any case.
 * - Any other token of the session, remembered or not, however many rotations ago, is the theft signal.
 */
export interface PastToken {
  key: string
  /** Opens with this token to the next one; null for a token retired by a migration. */
  box: string | null
  until: number
}

export interface RotationState {
  /** The current token's key. */
  cur: string
  /** Whether the current token has been presented since it was issued. */
  seen: boolean
  /** Oldest first. Treat as immutable: every change assigns a new array. */
  past: readonly PastToken[]
  /** How many migrations the session has had (retireAll counts them); absent: none. */
  migrations?: number | undefined
}

export type TokenMatch =
  | { kind: 'current' }
  /** A rotated token within its deadline; `chain` opens from it to the current token. */
  | { kind: 'rotated', chain: string[] }
  /** Retired by a migration, within its deadline: "no session". */
  | { kind: 'retired' }
  /** Replaced by the latest rotation or migration, after its deadline, the current token never presented: the session ends quietly. */
  | { kind: 'stale' }
  /** Anything else: the theft signal. */
  | { kind: 'reused' }

/** Shared by every session with no earlier token (most of them): one array less per session. */
export const NO_PAST: readonly PastToken[] = Object.freeze([])

export function newRotationState (key: string): RotationState {
  return { cur: key, seen: false, past: NO_PAST }
}

/** What the presented token `key` is to the session at `now`. */
export function matchToken (state: RotationState, key: string, now: number): TokenMatch {
  if (key === state.cur) return { kind: 'current' }
  const past = state.past
  for (let i = past.length - 1; i >= 0; i--) {
    const entry = past[i]!
    if (entry.key !== key) continue
    // The token the latest rotation or migration replaced is the last entry (rotate and retireAll append it).
    if (entry.until <= now) return !state.seen && i === past.length - 1 ? { kind: 'stale' } : { kind: 'reused' }
    if (entry.box === null) return { kind: 'retired' }
    return { kind: 'rotated', chain: chainFrom(past, i) }
  }
  return { kind: 'reused' }
}

/**
 * What a commit that presented `key` may do, judged in the same step as its write: the chain it learns
 * ([] for the current token, the grace boxes for a rotated one the session keeps), null when it may write
 * but learns no token, false when it may not write at all.
 *
 * A request was admitted with a current or rotated token. If the session no longer holds that token when
 * the request commits, it was either pruned (a rotated token past its deadline, dropped by a later
 * rotation: an honest slow request, which may save its changes) or retired by a migration and dropped
 * since (which must not write into the migrated session: fixation). `migrations` is the session's
 * migration count when the request was admitted: unchanged, no migration happened since. Without it, the
 * token may not write.
 */
export function commitChain (state: RotationState, key: string, migrations?: number): string[] | null | false {
  if (key === state.cur) return []
  const past = state.past
  for (let i = 0; i < past.length; i++) {
    if (past[i]!.key === key) return past[i]!.box === null ? false : chainFrom(past, i)
  }
  return Number.isSafeInteger(migrations) && migrations === (state.migrations ?? 0) ? null : false
}

function chainFrom (past: readonly PastToken[], i: number): string[] {
  const chain: string[] = []
  for (let j = i; j < past.length; j++) chain.push(past[j]!.box!)
  return chain
}

/**
 * The current token was presented: the first time, its predecessor gets the grace period from now on.
 * True when the state changed.
 */
export function markPresented (state: Pick<RotationState, 'seen' | 'past'>, now: number, gracePeriod: number): boolean {
  if (state.seen) return false
  state.seen = true
  const last = state.past[state.past.length - 1]
  if (last !== undefined && last.box !== null) {
    const until = Math.min(last.until, now + gracePeriod)
    state.past = [...state.past.slice(0, -1), { key: last.key, box: last.box, until }]
  }
  return true
}

/**
 * Drops earlier tokens past their deadline. Retired ones go one by one; rotated ones only as a leading
 * run: a rotated token past its deadline that stands between two others still carries the box that
 * leads the older one on to the current token (its own key is refused all the same, by its deadline).
 * Replayed, a dropped token is the theft signal like any other. (Retired tokens always come before
 * rotated ones: a migration retires them all, rotations append.)
 */
function pruned (past: readonly PastToken[], now: number): PastToken[] {
  const kept: PastToken[] = []
  let leading = true
  for (const entry of past) {
    if (entry.box === null) {
      if (entry.until > now) kept.push(entry)
    } else if (!leading || entry.until > now) {
      leading = false
      kept.push(entry)
    }
  }
  return kept
}

/**
 * Rotates the current token to `newKey`; false (nothing changed) when MAX_PAST_TOKENS rotated tokens are
 * still kept, so none of them is cut short.
 */
export function rotate (state: RotationState, newKey: string, box: string, now: number, unseenWindow: number): boolean {
  const past = pruned(state.past, now)
  let rotated = 0
  for (const entry of past) if (entry.box !== null) rotated++
  if (rotated >= MAX_PAST_TOKENS) return false
  past.push({ key: state.cur, box, until: now + unseenWindow })
  state.past = past
  state.cur = newKey
  state.seen = false
  return true
}

/** May a request that presented `key` migrate the session? Only with the current or a rotated token. */
export function mayMigrate (state: RotationState, key: string): boolean {
  return key === state.cur || state.past.some((entry) => entry.key === key && entry.box !== null)
}

/**
 * Retired tokens kept at most: eight migrations in a row, each of a record that held MAX_PAST_TOKENS
 * rotated tokens, within the window. Beyond that the oldest are dropped, and a dropped one presented again
 * is the theft signal like any token the session does not hold: the bound fails closed, so it never hides
 * a thief (dropping only makes the store stricter); only an app that migrates a session dozens of times
 * within unseenWindow, with requests in flight, would see those taken for thieves.
 */
export const MAX_RETIRED_TOKENS = 8 * (MAX_PAST_TOKENS + 1)

/**
 * A migration: a new current token, and every token still working retired until `retiredUntil` (those
 * retired before keep their own deadline), so a request in flight with any of them is never taken for a
 * thief. At most MAX_RETIRED_TOKENS are kept, the oldest dropped first.
 */
export function retireAll (state: RotationState, newKey: string, now: number, retiredUntil: number): void {
  const retired: PastToken[] = []
  for (const entry of state.past) {
    if (entry.until <= now) continue
    retired.push(entry.box === null ? entry : { key: entry.key, box: null, until: retiredUntil })
  }
  retired.push({ key: state.cur, box: null, until: retiredUntil })
  state.past = retired.slice(-MAX_RETIRED_TOKENS)
  state.cur = newKey
  state.seen = false
  state.migrations = (state.migrations ?? 0) + 1
}
