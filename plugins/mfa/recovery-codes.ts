/**
 * Recovery codes as a second factor: argon2id hashes in the user's record, each code usable once
 * (also under parallel requests and across processes), and their replacement.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { sha } from '../../lib/crypto/cipher.js'
import { xemsError } from '../../lib/errors.js'
import { findRecoveryCode, generateRecoveryCodes, hashRecoveryCodes, normalizeRecoveryCode } from '../../lib/mfa/recovery-codes.js'
import { MAX_AGE_CAP_MS } from '../../lib/session/engine.js'
import type { MfaContext } from './context.js'
import { isEnrolled } from './factors.js'
import { activeSessionOf, assertFresh } from './guards.js'
import type { MfaRecord, VerifyResult, XemsMfa } from './types.js'

export interface RecoveryCodes {
  /** Checks a recovery code against the user's record (loaded by the caller); on success the code is used up. */
  check: (userId: string, code: unknown, record: MfaRecord | null, log: FastifyBaseLogger) => Promise<VerifyResult | null>
  regenerate: XemsMfa['regenerateRecoveryCodes']
}

export function createRecoveryCodes (ctx: MfaContext): RecoveryCodes {
  const { engine, mfaState } = ctx
  const { users, recoveryCount, argon2, freshFor } = ctx.settings

  async function check (userId: string, code: unknown, record: MfaRecord | null, log: FastifyBaseLogger): Promise<VerifyResult | null> {
    const hashes = record?.recoveryCodes ?? []
    if (normalizeRecoveryCode(code) === null || hashes.length === 0) return null
    const index = await findRecoveryCode(hashes, code)
    if (index < 0) return null
    // Of parallel requests with the same code, exactly one claims it.
    // The claim is keyed by the code's own hash (a random salt each), so it dies with the code: codes
    // issued later, at the same position, are new codes.
    if (!await mfaState.add(`recovery-used:${userId}:${sha('sha256', hashes[index]!).toString('base64url')}`, true, MAX_AGE_CAP_MS)) {
      log.warn({ xems: 'recovery-replay', userId }, 'xems: a used recovery code was replayed')
      return null
    }
    const fresh = await users.load(userId) ?? {}
    const codes = [...(fresh.recoveryCodes ?? hashes)]
    codes[index] = null
    await users.save(userId, { ...fresh, recoveryCodes: codes })
    return { method: 'recovery', recoveryCodesLeft: codes.filter((hash) => hash !== null).length }
  }

  async function regenerate (request: FastifyRequest): Promise<string[]> {
    const { userId } = activeSessionOf(ctx, request)
    const record = await users.load(userId)
    if (record === null || !isEnrolled(record)) throw xemsError('FST_XEMS_MFA_NOT_ENROLLED')
    assertFresh(ctx, request, freshFor)
    const codes = generateRecoveryCodes(recoveryCount)
    await users.save(userId, { ...record, recoveryCodes: await hashRecoveryCodes(codes, argon2) })
    request.log.info({ xems: 'recovery-codes-regenerated', userId }, 'xems: recovery codes replaced')
    engine.security({ type: 'recovery-codes-regenerated', at: engine.now(), userId })
    return codes
  }

  return { check, regenerate }
}
