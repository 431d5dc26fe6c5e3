/**
 * What a request must bring for the signed-in steps: an active session of a user, and for sensitive
 * steps a second factor verified recently (`mfaVerifiedAt`).
 */
import type { FastifyRequest } from 'fastify'
import { parsePositiveDuration } from '../../lib/duration.js'
import { xemsError } from '../../lib/errors.js'
import type { MfaContext } from './context.js'
import type { XemsMfa } from './types.js'

/** The request's active session's user; 401 FST_XEMS_NO_SESSION without one. */
export function activeSessionOf (ctx: MfaContext, request: FastifyRequest): { userId: string } {
  const session = request.session
  if (session === null || session.destroyed || session.sandbox !== ctx.settings.activeSandbox || session.userId === undefined) {
    throw xemsError('FST_XEMS_NO_SESSION')
  }
  return { userId: session.userId }
}

/** 401 FST_XEMS_MFA_REQUIRED unless this session verified a second factor within `limit`. */
export function assertFresh (ctx: MfaContext, request: FastifyRequest, limit: number): void {
  const at = request.session!.data.mfaVerifiedAt
  const now = ctx.engine.now()
  if (typeof at !== 'number' || at > now || now - at > limit) {
    throw xemsError('FST_XEMS_MFA_REQUIRED')
  }
}

export function createFreshMfaGuard (ctx: MfaContext): XemsMfa['requireFreshMfa'] {
  return function requireFreshMfa (maxAge) {
    const limit = parsePositiveDuration(maxAge, 'requireFreshMfa(maxAge)')
    return async function xemsFreshMfaGuard (request: FastifyRequest): Promise<void> {
      activeSessionOf(ctx, request)
      assertFresh(ctx, request, limit)
    }
  }
}
