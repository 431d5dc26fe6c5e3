/**
 * The sign-in flow after the password: begin opens the pending session (or the active one, without a
 * second factor or on a remembered device), verify checks a code against it and moves it, with a new
 * token, to the active sandbox; stepUp re-verifies a code for a signed-in user.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { xemsError } from '../../lib/errors.js'
import { PASSKEY_FIRST_FACTOR, type MfaContext } from './context.js'
import { methodsOf } from './factors.js'
import { activeSessionOf } from './guards.js'
import type { Lockout } from './lockout.js'
import type { RecoveryCodes } from './recovery-codes.js'
import type { RememberedDevices } from './remembered-devices.js'
import type { TotpFactor } from './totp.js'
import type { VerifyResult, XemsMfa } from './types.js'

export interface Flow extends Pick<XemsMfa, 'begin' | 'verify' | 'stepUp'> {
  /**
   * Counts one second-factor attempt on a pending session (code or passkey alike) and refuses past
   * `maxAttempts`. The counter outlives the pending session, so once spent the session is a dead end:
   * the user signs in again. It is not destroyed here: a concurrent request may just have promoted it.
   */
  countPendingAttempt: (sessionId: string) => Promise<number>
  /** A pending session's data as the active session gets it: nothing that claims a verification. */
  carriedData: (data: Record<string, unknown>) => Record<string, unknown>
  /**
   * Moves the pending session to the active sandbox; of concurrent promotions of one session exactly one wins
   * (the others get 401 FST_XEMS_NO_SESSION).
   */
  promote: (
    request: FastifyRequest, data: Record<string, unknown>, userId: string, signIn: 'totp' | 'recovery-code' | 'passkey'
  ) => Promise<void>
}

export interface FlowParts {
  lockout: Lockout
  totp: TotpFactor
  recoveryCodes: RecoveryCodes
  devices: RememberedDevices
}

export function createFlow (ctx: MfaContext, { lockout, totp, recoveryCodes, devices }: FlowParts): Flow {
  const { engine } = ctx
  const { users, pendingSandbox, activeSandbox, pendingTtl, maxAttempts } = ctx.settings

  async function countPendingAttempt (sessionId: string): Promise<number> {
    const attempts = await engine.hit(`xems-mfa:attempts:${sessionId}`, pendingTtl)
    if (attempts.count > maxAttempts) {
      throw xemsError('FST_XEMS_MFA_ATTEMPTS')
    }
    return attempts.count
  }

  function carriedData (data: Record<string, unknown>): Record<string, unknown> {
    const { mfaVerifiedAt: _ignored, [PASSKEY_FIRST_FACTOR]: _first, ...carried } = data
    return carried
  }

  async function promote (
    request: FastifyRequest, data: Record<string, unknown>, userId: string, signIn: 'totp' | 'recovery-code' | 'passkey'
  ): Promise<void> {
    await request.session!.migrate(activeSandbox, { data: { ...data, mfaVerifiedAt: engine.now() }, userId, signIn })
  }

  /** Checks a code for a user: TOTP (each step once, never an older step) or a recovery code (each once). */
  async function checkCode (userId: string, code: unknown, log: FastifyBaseLogger): Promise<VerifyResult | null> {
    const record = await users.load(userId)
    if (typeof code === 'string' && /^\d{6,8}$/.test(code)) {
      const enrolled = record?.totp
      if (enrolled === undefined || enrolled === null) return null
      return await totp.check(userId, code, enrolled, log) ? { method: 'totp' } : null
    }
    return await recoveryCodes.check(userId, code, record, log)
  }

  const begin: XemsMfa['begin'] = async (request, reply, { userId, data = {} }) => {
    // No lock check here: the password guess that led here was admitted by verifyPassword.
    const record = await users.load(userId)
    const methods = methodsOf(ctx, record)
    const enrolled = methods.length > 0
    // Only a verified second factor makes a session fresh: never data handed in, never a device.
    const { mfaVerifiedAt: _ignored, ...carried } = data as Record<string, unknown>
    if (!enrolled || await devices.rememberedFor(request, userId)) {
      await reply.xLink(carried, { sandbox: activeSandbox, userId, signIn: enrolled ? 'remembered-device' : 'password' })
      await lockout.recordSuccess(userId)
      return { next: 'active', enrolled, remembered: enrolled }
    }
    await reply.xLink(carried, { sandbox: pendingSandbox, userId, ttl: pendingTtl, signIn: 'password' })
    // Without passkeys configured the answer is what it always was: { next: 'totp', ... }.
    return { next: methods[0]!, ...(ctx.settings.passkeys === undefined ? {} : { methods }), enrolled, remembered: false }
  }

  const verify: XemsMfa['verify'] = async (request, reply, code, verifyOptions = {}) => {
    const session = request.session
    if (session === null || session.destroyed || session.sandbox !== pendingSandbox || session.userId === undefined) {
      throw xemsError('FST_XEMS_MFA_NOT_PENDING')
    }
    const userId = session.userId
    const attempts = await countPendingAttempt(session.id)
    const admitted = await lockout.admit(userId, true, request.log, reply)
    const result = await checkCode(userId, code, request.log)
    if (result === null) {
      await lockout.failed(userId, true, 'second-factor', admitted, request.log)
      const left = maxAttempts - attempts
      throw xemsError('FST_XEMS_MFA_INVALID', [Math.max(0, left)])
    }
    await lockout.recordSuccess(userId)
    await promote(request, carriedData(session.data), userId, result.method === 'totp' ? 'totp' : 'recovery-code')
    if (verifyOptions.remember === true) await devices.rememberDevice(reply, userId)
    return result
  }

  const stepUp: XemsMfa['stepUp'] = async (request, reply, code) => {
    const { userId } = activeSessionOf(ctx, request)
    const admitted = await lockout.admit(userId, true, request.log, reply)
    const result = await checkCode(userId, code, request.log)
    if (result === null) {
      await lockout.failed(userId, true, 'step-up', admitted, request.log)
      throw xemsError('FST_XEMS_MFA_WRONG')
    }
    await lockout.recordSuccess(userId)
    request.session!.data.mfaVerifiedAt = engine.now()
    return result
  }

  return { begin, verify, stepUp, countPendingAttempt, carriedData, promote }
}
