import type { Duration } from '../duration.js'
import type { DeviceInfo } from '../device.js'
import type { SecurityEvent } from '../security-events.js'
import type { SessionBinding, UnreadableBinding } from '../binding/binding.js'
import type { StoredSession } from '../store/contract.js'
import type { ParsedToken } from './token.js'

/** A session as `resolveSession` returns it. */
export interface ResolvedSession {
  /** The public id: names the session in logs and lists, opens nothing. */
  id: string
  sandbox: string
  data: Record<string, unknown>
  userId?: string | undefined
  createdAt: number
  lastSeenAt: number
  expiresAt: number
  /** The token to use from now on (a new one when the call rotated). */
  token: string
  /** The key the session is bound to (only with `allowBound`), or null. */
  binding: SessionBinding | UnreadableBinding | null
}

export interface CreateSessionOptions {
  ttl?: Duration | undefined
  userId?: string | undefined
  /** The device record kept with the session (the plugin fills it from the request). */
  device?: DeviceInfo | undefined
  /** The key the session is bound to from its first response (a DPoP login). */
  binding?: SessionBinding | undefined
}

export interface ResolveSessionOptions {
  /** Only a session of this sandbox resolves (default: the default sandbox). */
  sandbox?: string | undefined
  /** Issue a new token (default false); the presented one keeps working until the new one is used. */
  rotate?: boolean | undefined
  /** Grace the previous token gets when this call presents its successor for the first time (default: the engine's). */
  gracePeriod?: Duration | undefined
  /**
   * Resolve sessions bound to a key (DBSC, DPoP) too (default false: a bound session is null here, since
   * a token alone is not that session). Set it only when the caller checks the possession of the key itself.
   */
  allowBound?: boolean | undefined
}

export interface MigrateOptions {
  from: string
  to: string
  /** Replaces the session data when given; otherwise it is kept. */
  data?: Record<string, unknown> | undefined
  /** Idle lifetime in the new sandbox (default: that sandbox's ttl). */
  ttl?: Duration | undefined
  userId?: string | undefined
  /** With `data`: the device record to keep (data replaces everything, the device record included). */
  device?: DeviceInfo | null | undefined
  /** With `data`: the key binding to keep (a session stays bound to its key through migrations). */
  binding?: SessionBinding | null | undefined
}

/** Every event names sessions by their public id. */
export interface XemsEvents {
  created: [{ id: string, sandbox: string, userId?: string | undefined }]
  rotated: [{ id: string, sandbox: string }]
  migrated: [{ id: string, from: string, to: string }]
  destroyed: [{ id: string, sandbox: string }]
  reuse: [{ id: string, sandbox: string, userId?: string | undefined, revoked: boolean }]
  revoked: [{ userId: string, count: number }]
  /** The security event stream (lib/security-events.ts): no token, code or secret in any of them. */
  security: [SecurityEvent]
}

/** The token a request presented, as the engine needs it to rotate or migrate its session. */
export interface PresentedToken extends ParsedToken {
  /** The store's key of the token. */
  key: string
}

/** What a token opened to. `token` is the token the client must use from now on, when known. */
export type Opened =
  | { status: 'none' }
  /** A token a migration retired within its deadline (see ResolveResult): no session, no theft signal. */
  | { status: 'retired' }
  | { status: 'reused', id: string, sandbox: string, userId?: string | undefined, revoked: boolean, device: DeviceInfo | null }
  | { status: 'live' | 'grace', session: StoredSession, presented: PresentedToken, token: string | null }
