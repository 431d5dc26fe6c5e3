/**
 * A user's second factors as a whole: which ones the record holds, and what any change of them
 * does (other sessions and remembered devices end; this session gets a new token and is not fresh).
 */
import type { FastifyRequest } from 'fastify'
import type { MfaContext } from './context.js'
import { activeSessionOf, assertFresh } from './guards.js'
import type { RememberedDevices } from './remembered-devices.js'
import type { MfaRecord, XemsMfa } from './types.js'

export const isEnrolled = (record: MfaRecord | null): boolean => record?.totp !== undefined && record?.totp !== null
/** Any second factor: TOTP or a passkey. */
export const hasFactor = (record: MfaRecord | null): boolean => isEnrolled(record) || (record?.passkeys?.length ?? 0) > 0
/** The second factors a pending session of this user accepts (passkeys only with the `passkeys` option). */
export const methodsOf = (ctx: MfaContext, record: MfaRecord | null): Array<'totp' | 'passkey'> => [
  ...(isEnrolled(record) ? ['totp' as const] : []),
  ...(ctx.settings.passkeys !== undefined && (record?.passkeys?.length ?? 0) > 0 ? ['passkey' as const] : [])
]

export interface FactorChanges {
  revokeUser: XemsMfa['revokeUser']
  /**
   * After a change of factors: other sessions and remembered devices end; this session gets a new
   * token, and its second factor is no longer fresh (it was verified with the factor that changed, or
   * with none): the next sensitive step asks for a code of the new factor.
   */
  afterFactorChange: (request: FastifyRequest, userId: string) => Promise<void>
  disable: XemsMfa['disable']
}

export function createFactorChanges (ctx: MfaContext, devices: RememberedDevices): FactorChanges {
  const { engine } = ctx
  const { users, freshFor } = ctx.settings

  async function revokeUser (userId: string, revokeOptions: { except?: string | undefined } = {}): Promise<number> {
    await devices.forgetDevices(userId)
    return await engine.revokeUser(userId, revokeOptions)
  }

  async function afterFactorChange (request: FastifyRequest, userId: string): Promise<void> {
    const session = request.session!
    await revokeUser(userId, { except: session.id })
    await session.regenerate()
    delete session.data.mfaVerifiedAt
  }

  async function disable (request: FastifyRequest): Promise<void> {
    const { userId } = activeSessionOf(ctx, request)
    const record = await users.load(userId)
    if (hasFactor(record)) assertFresh(ctx, request, freshFor)
    await users.save(
      userId, { ...(record ?? {}), totp: null, recoveryCodes: [], ...(record?.passkeys === undefined ? {} : { passkeys: [] }) }
    )
    await afterFactorChange(request, userId)
    request.log.info({ xems: 'mfa-disabled', userId }, 'xems: second factor removed')
    if (isEnrolled(record)) engine.security({ type: 'factor-removed', at: engine.now(), userId, factor: 'totp' })
    if ((record?.passkeys?.length ?? 0) > 0) engine.security({ type: 'factor-removed', at: engine.now(), userId, factor: 'passkey' })
  }

  return { revokeUser, afterFactorChange, disable }
}
