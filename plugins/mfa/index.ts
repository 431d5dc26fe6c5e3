/**
 * xemsMfa, the fastify-plugin wrapper: checks the options, builds the shared context and the parts
 * (lockout, password, TOTP, recovery codes, remembered devices, factor changes, the flow, passkeys
 * when configured), and decorates the API they make up as `fastify.xemsMfa`.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { badOption } from '../../lib/errors.js'
import type { PasskeyCredential, PasskeyInfo, PasskeyOptions } from '../../lib/mfa/passkey.js'
import { createContext, PASSKEY_FIRST_FACTOR } from './context.js'
import { engineOf } from './engine.js'
import { createFactorChanges, hasFactor, methodsOf } from './factors.js'
import { createFlow } from './flow.js'
import { activeSessionOf, assertFresh, createFreshMfaGuard } from './guards.js'
import { createLockout } from './lockout.js'
import { checkOptions, type XemsMfaOptions } from './options.js'
import { createPasswordCheck } from './password.js'
import type { MfaCore, PasskeyApi, PasskeyAuthResult, PasskeyCreationOptions, PasskeyRequestOptions } from './passkeys.js'
import { createRecoveryCodes } from './recovery-codes.js'
import { createRememberedDevices } from './remembered-devices.js'
import { createTotpFactor } from './totp.js'
import type { XemsMfa } from './types.js'

export type { PasskeyCredential, PasskeyInfo, PasskeyOptions, PasskeyAuthResult, PasskeyCreationOptions, PasskeyRequestOptions }
export type { MfaLockoutOptions, XemsMfaOptions } from './options.js'
export type { BeginOptions, BeginResult, Enrolment, MfaRecord, MfaUserAdapter, VerifyResult, XemsMfa } from './types.js'
export type { Admitted } from './lockout.js'
export { MAX_LOGIN_NAME_LENGTH } from './password.js'

async function xemsMfaPlugin (fastify: FastifyInstance, options: XemsMfaOptions): Promise<void> {
  const engine = engineOf(fastify)
  const settings = checkOptions(options, engine.defaultSandbox)
  const ctx = createContext(fastify, engine, settings)

  const lockout = createLockout(ctx)
  const devices = createRememberedDevices(ctx)
  const changes = createFactorChanges(ctx, devices)
  const totp = createTotpFactor(ctx, lockout, changes)
  const recoveryCodes = createRecoveryCodes(ctx)
  const flow = createFlow(ctx, { lockout, totp, recoveryCodes, devices })

  // Passkeys load @simplewebauthn/server only when configured: apps without them never load it.
  const core: MfaCore = {
    engine,
    users: settings.users,
    pendingSandbox: settings.pendingSandbox,
    activeSandbox: settings.activeSandbox,
    freshFor: settings.freshFor,
    admit: lockout.admit,
    failed: lockout.failed,
    recordSuccess: lockout.recordSuccess,
    countPendingAttempt: flow.countPendingAttempt,
    carriedData: flow.carriedData,
    promote: flow.promote,
    assertFresh: (request, limit) => { assertFresh(ctx, request, limit) },
    activeSessionOf: (request) => activeSessionOf(ctx, request),
    afterFactorChange: changes.afterFactorChange,
    hasFactor,
    methodsOf: (record) => methodsOf(ctx, record),
    rememberDevice: devices.rememberDevice,
    firstFactorKey: PASSKEY_FIRST_FACTOR
  }
  const passkeys: PasskeyApi | null = settings.passkeys === undefined
    ? null
    : (await import('./passkeys.js')).createPasskeys(core, settings.passkeys)
  function passkeyApi (): PasskeyApi {
    if (passkeys === null) throw badOption('passkeys', 'must be set (to { rpId, rpName, origins }) to use the passkey ceremonies')
    return passkeys
  }

  const mfa: XemsMfa = {
    verifyPassword: createPasswordCheck(ctx, lockout),
    assertNotLocked: lockout.assertNotLocked,
    async unlock (userId) {
      await lockout.recordSuccess(userId)
    },
    begin: flow.begin,
    verify: flow.verify,
    startEnrolment: totp.startEnrolment,
    confirmEnrolment: totp.confirmEnrolment,
    stepUp: flow.stepUp,
    disable: changes.disable,
    regenerateRecoveryCodes: recoveryCodes.regenerate,
    requireFreshMfa: createFreshMfaGuard(ctx),
    revokeUser: changes.revokeUser,
    startPasskeyRegistration: async (request, reply, o) => await passkeyApi().startPasskeyRegistration(request, reply, o),
    finishPasskeyRegistration: async (request, reply, response, o) =>
      await passkeyApi().finishPasskeyRegistration(request, reply, response, o),
    startPasskeyAuthentication: async (request, reply) => await passkeyApi().startPasskeyAuthentication(request, reply),
    finishPasskeyAuthentication: async (request, reply, response, o) =>
      await passkeyApi().finishPasskeyAuthentication(request, reply, response, o),
    listPasskeys: async (request) => await passkeyApi().listPasskeys(request),
    removePasskey: async (request, id) => await passkeyApi().removePasskey(request, id)
  }

  fastify.decorate('xemsMfa', mfa)
}

/**
 * Password → TOTP login helpers for the routes of one context: register it next to the login routes,
 * after xemsSession (on the same instance or a parent).
 */
// xemsMfa keeps its state in the session store: Fastify refuses it at register without xemsSession on this instance or a parent.
export const xemsMfa = fp(xemsMfaPlugin, { name: 'xems-mfa', fastify: '5.x', dependencies: ['xems-session'] })
