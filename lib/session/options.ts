import { parseDuration, parsePositiveDuration, type Duration } from '../duration.js'
import { badOption } from '../errors.js'
import type { SecurityEvent } from '../security-events.js'
import type { SessionStore, UserLimit } from '../store/contract.js'

/** The absolute cap on any session or stored value: five days, whatever is refreshed. */
export const MAX_AGE_CAP_MS = 5 * 86_400_000
export const DEFAULT_SANDBOX = 'auth-active'

export type ReuseAction = 'revoke' | 'reject'

export interface SandboxOptions {
  /** Idle lifetime of sessions and default lifetime of values in this sandbox. */
  ttl?: Duration | undefined
}

export interface EngineOptions {
  store?: SessionStore | undefined
  /** The default sandbox (default `auth-active`). */
  sandbox?: string | undefined
  /** Idle lifetime of the default sandbox, refreshed by use (default `1h`). */
  ttl?: Duration | undefined
  /** Absolute cap from creation, never extended (default and maximum `5d`). */
  maxAge?: Duration | undefined
  /**
   * How long a rotated token keeps working once its successor has been presented: requests that were
   * already in flight, or waiting in the browser's own queues (default `10s`, at most 1 minute).
   */
  gracePeriod?: Duration | undefined
  /**
   * How long a rotated token keeps working while its successor has not been presented yet: a lost
   * response, a backlog, a commit whose answer never arrived, a browser that serialises requests. It is
   * answered with the current token. Default `10m`; at least gracePeriod, at most maxAge.
   */
  unseenWindow?: Duration | undefined
  /** What an earlier token replayed after its window does: `revoke` the session (default) or only `reject` itself. */
  onReuse?: ReuseAction | undefined
  /** Per-sandbox settings; sandboxes not named here use `ttl`. */
  sandboxes?: Record<string, SandboxOptions> | undefined
  /** Milliseconds since the epoch (default Date.now); for tests. */
  clock?: (() => number) | undefined
  /** Receives every security event (the same as `app.xems.on('security', fn)`); see lib/security-events.ts. */
  onSecurityEvent?: ((event: SecurityEvent) => void) | undefined
  /** A cap on the live sessions of one user (default: none); see MaxSessionsPerUser. */
  maxSessionsPerUser?: MaxSessionsPerUser | undefined
}

/**
 * At most `limit` live sessions per user, counted and decided in one atomic store step whenever a
 * session gains a user (created with one, or migrated to one: a sign-in). Every live session of the
 * user counts, in any sandbox.
 */
export interface MaxSessionsPerUser {
  /** 1 to 1000. */
  limit: number
  /**
   * `'end-oldest'`: the sign-in succeeds and the user's least recently created sessions end (their
   * tokens answer 401 FST_XEMS_NO_SESSION, not the theft signal), with a `session-limit-ended` security
   * event each. `'refuse'`: the sign-in fails with 409 FST_XEMS_SESSION_LIMIT and nothing is created.
   */
  onLimit: 'end-oldest' | 'refuse'
}

export function checkUserLimit (value: MaxSessionsPerUser | undefined): UserLimit | null {
  if (value === undefined) return null
  if (value === null || typeof value !== 'object') {
    throw badOption('maxSessionsPerUser', "must be an object { limit, onLimit: 'end-oldest' | 'refuse' }")
  }
  if (!Number.isInteger(value.limit) || value.limit < 1 || value.limit > 1000) {
    throw badOption('maxSessionsPerUser.limit', 'must be a whole number from 1 to 1000')
  }
  if (value.onLimit !== 'end-oldest' && value.onLimit !== 'refuse') {
    throw badOption('maxSessionsPerUser.onLimit', "must be 'end-oldest' or 'refuse'")
  }
  return { max: value.limit, onLimit: value.onLimit }
}

export function checkGrace (value: Duration, option: string): number {
  const ms = parseDuration(value, option)
  if (ms > 60_000) throw badOption(option, 'must be at most 1 minute: grace is for requests in flight, not for keeping old tokens alive')
  return ms
}

/** An idle lifetime: positive, and never past the absolute cap `maxAge`. */
export function checkTtl (value: Duration, option: string, maxAge: number): number {
  const ms = parsePositiveDuration(value, option)
  if (ms > maxAge) throw badOption(option, `must not exceed maxAge (${maxAge} ms): nothing lives longer than the absolute cap`)
  return ms
}

const STORE_METHODS = [
  'create', 'resolve', 'commit', 'migrate', 'destroy', 'revokeUserSession', 'revokeUser', 'listUser', 'kvGet', 'kvSet', 'kvDel', 'kvAdd',
  'kvTake', 'increment', 'resetCounter', 'close'
] as const

export function checkStore (store: unknown): void {
  const missing = STORE_METHODS.filter((method) => typeof (store as Record<string, unknown> | null)?.[method] !== 'function')
  if (missing.length > 0) throw badOption('store', `must implement the SessionStore contract; missing: ${missing.join(', ')}`)
}
