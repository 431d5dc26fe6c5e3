/**
 * TOTP as a second factor: each step accepted once per user and never an older one (the claim is an
 * atomic add in the store, so this holds across processes), and enrolment, which stores the secret
 * only after a first valid code and issues the recovery codes.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { renderSVG } from 'uqr'
import { xemsError } from '../../lib/errors.js'
import { generateRecoveryCodes, hashRecoveryCodes } from '../../lib/mfa/recovery-codes.js'
import { generateTotpSecret, totpUri, verifyTotp } from '../../lib/mfa/totp.js'
import { MAX_AGE_CAP_MS } from '../../lib/session/engine.js'
import type { MfaContext } from './context.js'
import type { FactorChanges } from './factors.js'
import { hasFactor } from './factors.js'
import { activeSessionOf, assertFresh } from './guards.js'
import type { Lockout } from './lockout.js'
import { FIFTEEN_MINUTES } from './options.js'
import type { MfaRecord, XemsMfa } from './types.js'

export interface TotpFactor {
  /** Checks a code against the user's enrolled TOTP; a valid code claims its step (false when replayed). */
  check: (userId: string, code: string, totp: NonNullable<MfaRecord['totp']>, log: FastifyBaseLogger) => Promise<boolean>
  startEnrolment: XemsMfa['startEnrolment']
  confirmEnrolment: XemsMfa['confirmEnrolment']
}

export function createTotpFactor (ctx: MfaContext, lockout: Lockout, changes: FactorChanges): TotpFactor {
  const { engine, mfaState } = ctx
  const { users, window, totpParams, recoveryCount, argon2, freshFor, issuer } = ctx.settings

  async function check (userId: string, code: string, totp: NonNullable<MfaRecord['totp']>, log: FastifyBaseLogger): Promise<boolean> {
    const lastStep = await mfaState.get<number>(`last-step:${userId}`)
    const period = totp.period ?? 30
    const result = await verifyTotp({
      secret: totp.secret,
      token: code,
      window,
      at: engine.now(),
      period,
      ...(totp.algorithm === undefined ? {} : { algorithm: totp.algorithm }),
      ...(totp.digits === undefined ? {} : { digits: totp.digits }),
      ...(lastStep === null ? {} : { afterStep: lastStep })
    })
    if (!result.valid || result.step === null) {
      if (lastStep !== null && await isReplay(code, totp, lastStep)) {
        log.warn({ xems: 'totp-replay', userId }, 'xems: a TOTP code of an already used step was replayed')
      }
      return false
    }
    return await claimStep(userId, result.step, period, log)
  }

  /** Accepts a step once per user, also across processes: the claim is an atomic add in the store. */
  async function claimStep (userId: string, step: number, period: number, log: FastifyBaseLogger): Promise<boolean> {
    const keep = (2 * window + 2) * period * 1000
    if (!await mfaState.add(`step:${userId}:${step}`, true, keep)) {
      log.warn({ xems: 'totp-replay', userId }, 'xems: a TOTP code of an already used step was replayed')
      return false
    }
    const last = await mfaState.get<number>(`last-step:${userId}`)
    if (last === null || step > last) await mfaState.set(`last-step:${userId}`, step, MAX_AGE_CAP_MS)
    return true
  }

  async function isReplay (code: string, totp: NonNullable<MfaRecord['totp']>, lastStep: number): Promise<boolean> {
    const again = await verifyTotp({
      secret: totp.secret,
      token: code,
      window,
      at: engine.now(),
      ...(totp.period === undefined ? {} : { period: totp.period }),
      ...(totp.algorithm === undefined ? {} : { algorithm: totp.algorithm }),
      ...(totp.digits === undefined ? {} : { digits: totp.digits })
    })
    return again.valid && again.step !== null && again.step <= lastStep
  }

  async function startEnrolment (
    request: FastifyRequest, enrolOptions: { label?: string | undefined } = {}
  ): ReturnType<XemsMfa['startEnrolment']> {
    const { userId } = activeSessionOf(ctx, request)
    if (hasFactor(await users.load(userId))) assertFresh(ctx, request, freshFor)
    const secret = generateTotpSecret()
    await mfaState.set(`enrol:${userId}`, secret, FIFTEEN_MINUTES)
    const label = enrolOptions.label ?? userId
    const uri = totpUri({ secret, label, issuer, ...totpParams })
    return { secret, uri, qrSvg: renderSVG(uri) }
  }

  async function confirmEnrolment (request: FastifyRequest, code: unknown): Promise<{ recoveryCodes: string[] }> {
    const { userId } = activeSessionOf(ctx, request)
    const secret = await mfaState.get<string>(`enrol:${userId}`)
    if (secret === null) throw xemsError('FST_XEMS_MFA_NO_ENROLMENT')
    // Replacing a factor needs the current one, verified recently, at confirmation too.
    if (hasFactor(await users.load(userId))) assertFresh(ctx, request, freshFor)
    const admitted = await lockout.admit(userId, true, request.log)
    const result = typeof code === 'string'
      ? await verifyTotp({ secret, token: code, window, at: engine.now(), ...totpParams })
      : { valid: false, step: null }
    if (!result.valid || result.step === null || !await claimStep(userId, result.step, totpParams.period, request.log)) {
      await lockout.failed(userId, true, 'enrolment', admitted, request.log)
      throw xemsError('FST_XEMS_MFA_WRONG')
    }
    if (await mfaState.take(`enrol:${userId}`) === null) throw xemsError('FST_XEMS_MFA_ENROLMENT_CONFIRMED')
    const recoveryCodes = generateRecoveryCodes(recoveryCount)
    const record = await users.load(userId) ?? {}
    await users.save(userId, {
      ...record,
      totp: { secret, ...totpParams, enrolledAt: engine.now() },
      recoveryCodes: await hashRecoveryCodes(recoveryCodes, argon2)
    })
    await lockout.recordSuccess(userId)
    await changes.afterFactorChange(request, userId)
    request.log.info({ xems: 'mfa-enrolled', userId }, 'xems: TOTP enrolled')
    engine.security({ type: 'factor-enrolled', at: engine.now(), userId, factor: 'totp' })
    return { recoveryCodes }
  }

  return { check, startEnrolment, confirmEnrolment }
}
