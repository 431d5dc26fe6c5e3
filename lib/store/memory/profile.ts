import { NO_PAST, type PastToken } from '../rotation.js'

/**
 * The fields of a MemoryStore session that most sessions have in common: their sandbox, lifetimes and
 * rotation flags. A session without a user and without earlier tokens (most of them: a new session, or
 * one whose earlier tokens are gone) points at one shared profile of these values instead of carrying
 * them, five fields less per record.
 *
 * Profiles are frozen, shared or not: a change gives the session another profile (copy on write), so no
 * session ever writes into one another session reads. A profile naming a user or earlier tokens is never
 * shared, nor one of a session that migrated: only fields that are not per session (sandbox, lifetimes, the
 * `seen` flag) ever are.
 */
export class SessionProfile {
  readonly sandbox: string
  readonly idleTtl: number
  /** absoluteExpiresAt − createdAt: the same for every session an engine creates. */
  readonly lifeSpan: number
  /** Undefined without a user. */
  readonly userId: string | undefined
  /** RotationState.seen. */
  readonly seen: boolean
  /** RotationState.past: opaque entries (lib/store/rotation.ts), oldest first. */
  readonly past: readonly PastToken[]
  /** RotationState.migrations. */
  readonly migrations: number

  constructor (
    sandbox: string, idleTtl: number, lifeSpan: number, userId: string | undefined, seen: boolean, past: readonly PastToken[],
    migrations: number
  ) {
    this.sandbox = sandbox
    this.idleTtl = idleTtl
    this.lifeSpan = lifeSpan
    this.userId = userId
    this.seen = seen
    this.past = past
    this.migrations = migrations
    Object.freeze(this)
  }
}

/** Shared profiles at most; past it, the table starts over (sessions keep the profiles they have). */
export const MAX_SHARED_PROFILES = 1024

const shared = new Map<string, SessionProfile>()
/** The shared profile answered last: most sessions of a process have the same one. */
let last: SessionProfile | null = null

/** The profile of these values: a shared one when no field is per session, else one of its own. */
export function profileOf (
  sandbox: string, idleTtl: number, lifeSpan: number, userId: string | undefined, seen: boolean, past: readonly PastToken[], migrations = 0
): SessionProfile {
  if (userId !== undefined || past.length !== 0 || migrations !== 0) {
    return new SessionProfile(sandbox, idleTtl, lifeSpan, userId, seen, past, migrations)
  }
  if (last !== null && last.seen === seen && last.idleTtl === idleTtl && last.lifeSpan === lifeSpan && last.sandbox === sandbox) return last
  // The sandbox last: it is the only part that is not a number or a flag.
  const key = `${seen ? 1 : 0}:${idleTtl}:${lifeSpan}:${sandbox}`
  let profile = shared.get(key)
  if (profile === undefined) {
    if (shared.size >= MAX_SHARED_PROFILES) shared.clear()
    profile = new SessionProfile(sandbox, idleTtl, lifeSpan, undefined, seen, NO_PAST, 0)
    shared.set(key, profile)
  }
  last = profile
  return profile
}

/** How many profiles are shared now (tests). */
export function sharedProfiles (): number {
  return shared.size
}
