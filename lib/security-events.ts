import type { DeviceInfo } from './device.js'

/**
 * The security events an application can act on (`app.xems.on('security', fn)` or the
 * `onSecurityEvent` option): e-mail the user about a new device, alert on a theft signal. Sessions are
 * named by their public id; no event ever carries a token, a code, a secret or a password. `at` is
 * the engine's clock (ms since the epoch).
 */
export type SecurityEvent =
  /**
   * An earlier token of a session was replayed after its window: someone holds a copy of a token.
   * `lastUse` is what the session recorded of its last use before (the other holder); `presented` is
   * the request that replayed the token. Which of the two is the thief is not known.
   */
  | { type: 'theft', at: number, id: string, sandbox: string, userId?: string, revoked: boolean, lastUse: UseOf | null, presented: UseOf }
  /** A sign-in (a session reached the default sandbox with a user) from a device unlike any of the user's other live sessions. */
  | { type: 'new-device', at: number, id: string, userId: string, device: DeviceInfo }
  | { type: 'factor-enrolled', at: number, userId: string, factor: 'totp' | 'passkey' }
  | { type: 'factor-removed', at: number, userId: string, factor: 'totp' | 'passkey' }
  /**
   * A passkey signed with a counter that did not move forward (the assertion was refused): the
   * credential may have been cloned. `credentialId` is the passkey's public id (base64url).
   */
  | { type: 'passkey-counter-rollback', at: number, userId: string, credentialId: string, stored: number, presented: number }
  | { type: 'recovery-codes-regenerated', at: number, userId: string }
  /** A user reached the failed-attempt limit; sign-in answers 429 for `retryAfter` seconds. */
  | { type: 'lockout', at: number, userId: string, retryAfter: number }
  /** One session of a user ended by `revokeSession` (a "Sign out" on a row of "Your devices"). */
  | { type: 'session-revoked', at: number, userId: string, id: string }
  /**
   * A session of a user ended because a sign-in of that user went over `maxSessionsPerUser` (`onLimit:
   * 'end-oldest'`): `id` is the ended session, `by` the new one. Its tokens now answer "no session".
   */
  | { type: 'session-limit-ended', at: number, userId: string, id: string, by: string, reason: 'max-sessions-per-user' }
  /** A sign-in refused because the user has `maxSessionsPerUser` live sessions (`onLimit: 'refuse'`). */
  | { type: 'session-limit-refused', at: number, userId: string, reason: 'max-sessions-per-user' }
  /** Sessions of a user ended by `revokeUser` ("sign out everywhere", or all others with `except`). */
  | { type: 'user-revoked', at: number, userId: string, count: number, except?: string }

/** Where a request came from, as a theft signal reports it. */
export interface UseOf {
  userAgent: string
  ip?: string
  browser?: string
  os?: string
}

export type SecurityEventType = SecurityEvent['type']

/** Where (and whether) two devices look alike: same browser, OS and device type. */
export function sameKindOfDevice (a: DeviceInfo, b: DeviceInfo): boolean {
  return a.browser === b.browser && a.os === b.os && a.type === b.type
}
