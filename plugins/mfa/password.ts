/**
 * The password step (argon2id), throttled per login name by the lockout whether or not the name is
 * an account, with the input bounded before any store work.
 */
import { xemsError } from '../../lib/errors.js'
import { MAX_PASSWORD_LENGTH, verifyPassword as verifyArgon2 } from '../../lib/mfa/password.js'
import type { MfaContext } from './context.js'
import type { Lockout } from './lockout.js'
import type { XemsMfa } from './types.js'

/** Longest login name accepted: enough for any email address (254), far below the store's key limit. */
export const MAX_LOGIN_NAME_LENGTH = 256

function checkCredentialsInput (userId: unknown, password: unknown): void {
  const nameOk = userId === null || (typeof userId === 'string' && userId.length > 0 && userId.length <= MAX_LOGIN_NAME_LENGTH)
  const passwordOk = typeof password === 'string' && password.length > 0 && password.length <= MAX_PASSWORD_LENGTH
  if (!nameOk || !passwordOk) {
    throw xemsError('FST_XEMS_MFA_BAD_INPUT', [MAX_LOGIN_NAME_LENGTH, MAX_PASSWORD_LENGTH])
  }
}

export function createPasswordCheck (ctx: MfaContext, lockout: Lockout): XemsMfa['verifyPassword'] {
  const { argon2 } = ctx.settings
  return async function verifyPassword (userId, password, hash, request) {
    const log = request?.log ?? ctx.fastify.log
    checkCredentialsInput(userId, password)
    if (userId === null) return await verifyArgon2(null, password, argon2)
    // Failures count for any login name, known or not: a lock does not reveal that an account exists.
    const known = typeof hash === 'string'
    const admitted = await lockout.admit(userId, known, log)
    const ok = await verifyArgon2(hash, password, argon2)
    if (!ok) await lockout.failed(userId, known, 'password', admitted, log)
    return ok
  }
}
