import { decodeDevice, type DeviceInfo } from '../device.js'
import { badOption, xemsError, type XemsError } from '../errors.js'
import { sameKindOfDevice } from '../security-events.js'
import type { LimitResult, SessionInfo } from '../store/contract.js'
import { checkUserId } from './checks.js'
import type { XemsEngine } from './engine.js'
import { callStore } from './store-call.js'
import { publicIdOf } from './token.js'

/** A session of a user, as `listUserSessions` returns it: `id` is the public id. */
export interface UserSessionInfo extends Omit<SessionInfo, 'device'> {
  /** What the session recorded of its device (null for sessions opened without one, e.g. by createSession). */
  device: DeviceInfo | null
  /** True for the session of the request given as `current`. */
  current: boolean
}

export interface ListUserSessionsOptions {
  /** The request (or anything with `session.id`, or a public id) whose session gets `current: true`. */
  current?: { session?: { id: string } | null } | string | null
}

/** The one error of a refused sign-in under maxSessionsPerUser (409). */
export function sessionLimitError (): XemsError {
  return xemsError('FST_XEMS_SESSION_LIMIT')
}

/**
 * A sign-in: a session reached the default sandbox with a user. Emits `new-device` when no other
 * live session of the user is of the same kind of device (browser, OS, type). A notification, not a
 * guarantee: a device whose sessions all ended counts as new again. Costs a listUser, only with listeners.
 */
export async function signedIn (
  engine: XemsEngine, recordId: string, sandbox: string, userId: string | undefined, device: DeviceInfo | null | undefined
): Promise<void> {
  if (userId === undefined || device == null || sandbox !== engine.defaultSandbox || engine.listenerCount('security') === 0) return
  let listed: SessionInfo[]
  try {
    listed = await callStore(async () => await engine.store.listUser(userId, engine.now()))
  } catch {
    return
  }
  const others = listed.filter((session) => session.id !== recordId && session.sandbox === engine.defaultSandbox)
  if (others.some((session) => { const seen = decodeDevice(session.device); return seen !== null && sameKindOfDevice(seen, device) })) {
    return
  }
  engine.security({ type: 'new-device', at: engine.now(), id: publicIdOf(recordId), userId, device })
}

/**
 * What the store answered to a create or migration under maxSessionsPerUser: a refusal is the 409,
 * each session it ended a `session-limit-ended` security event.
 */
export function applyUserLimit (
  engine: XemsEngine, result: LimitResult | boolean | undefined, userId: string, recordId: string, now: number
): void {
  if (result === undefined || typeof result === 'boolean' || (result.status !== 'admitted' && result.status !== 'refused')) {
    throw badOption(
      'maxSessionsPerUser',
      'needs a store that applies userLimit (SessionStore.create and migrate answer a LimitResult; see docs/stores.md)'
    )
  }
  if (result.status === 'refused') {
    engine.security({ type: 'session-limit-refused', at: now, userId, reason: 'max-sessions-per-user' })
    throw sessionLimitError()
  }
  const by = publicIdOf(recordId)
  for (const ended of result.ended) {
    const id = publicIdOf(ended)
    engine.security({ type: 'session-limit-ended', at: now, userId, id, by, reason: 'max-sessions-per-user' })
  }
}

/** Ends every session of a user ("log out everywhere"), optionally but one (`except`: its public id). */
export async function revokeUser (engine: XemsEngine, userId: string, options: { except?: string | undefined }): Promise<number> {
  checkUserId(userId)
  let exceptId: string | undefined
  if (options.except !== undefined) {
    // The public id is one-way; the record it names is found among the user's own sessions.
    const sessions = await callStore(async () => await engine.store.listUser(userId, engine.now()))
    exceptId = sessions.find((session) => publicIdOf(session.id) === options.except)?.id
  }
  const count = await callStore(async () => await engine.store.revokeUser(userId, engine.now(), exceptId))
  engine.emit('revoked', { userId, count })
  engine.security({
    type: 'user-revoked', userId, count, ...(options.except === undefined ? {} : { except: options.except }), at: engine.now()
  })
  return count
}

/**
 * Ends one session of a user, named by its public id ("sign out" on a row of "Your devices"). False
 * when the user has no such live session: an id of another user's session is refused, in the store's
 * one atomic step that checks the owner and ends it.
 */
export async function revokeSession (engine: XemsEngine, userId: string, publicId: string): Promise<boolean> {
  checkUserId(userId)
  if (typeof publicId !== 'string' || publicId.length === 0 || publicId.length > 64) return false
  const now = engine.now()
  const sessions = await callStore(async () => await engine.store.listUser(userId, now))
  const target = sessions.find((session) => publicIdOf(session.id) === publicId)
  if (target === undefined) return false
  const ended = await callStore(async () => await engine.store.revokeUserSession(userId, target.id, now))
  if (ended) {
    engine.emit('destroyed', { id: publicId, sandbox: target.sandbox })
    engine.security({ type: 'session-revoked', userId, id: publicId, at: now })
  }
  return ended
}

/**
 * The live sessions of a user, newest use first, named by their public ids, each with its device
 * record and `current: true` for the session of `options.current` (a request).
 */
export async function listUserSessions (
  engine: XemsEngine, userId: string, options: ListUserSessionsOptions
): Promise<UserSessionInfo[]> {
  checkUserId(userId)
  const current = typeof options.current === 'string' ? options.current : options.current?.session?.id
  const sessions = await callStore(async () => await engine.store.listUser(userId, engine.now()))
  return sessions
    .map(({ device, ...session }) => {
      const id = publicIdOf(session.id)
      return { ...session, id, device: decodeDevice(device), current: id === current }
    })
    .sort((a, b) => b.lastSeenAt - a.lastSeenAt || b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1))
}
