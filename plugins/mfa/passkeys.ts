/**
 * The passkey ceremonies of xemsMfa (loaded only with its `passkeys` option): registration, and
 * authentication as a second factor, for step-up and for passwordless sign-in. The lockout, the
 * pending → active promotion and the freshness rule are xemsMfa's own, handed in as `MfaCore`.
 *
 * Challenges live in an internal sandbox for `challengeTtl`, one per session and ceremony type,
 * and are consumed exactly once (`take`) before anything is verified.
 */
import { randomBytes } from 'node:crypto'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify'
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server'
import { parsePositiveDuration } from '../../lib/duration.js'
import { badOption, xemsError, type XemsError } from '../../lib/errors.js'
import {
  authenticationOptions, checkRelyingParty, isCounterRollback, publicInfo, readClientData, registrationOptions,
  responseCredentialId, responseUserHandle, verifyAssertion, verifyRegistration,
  type ClientData, type PasskeyCredential, type PasskeyOptions
} from '../../lib/mfa/passkey.js'
import type { Admitted } from './lockout.js'
import type { MfaRecord, MfaUserAdapter, XemsMfa } from './types.js'
import type { XemsEngine } from '../../lib/session/engine.js'

export type PasskeyCreationOptions = PublicKeyCredentialCreationOptionsJSON
export type PasskeyRequestOptions = PublicKeyCredentialRequestOptionsJSON

export interface PasskeyAuthResult {
  method: 'passkey'
  /** What the assertion was for: the step after the password, a step-up, or a sign-in without password. */
  ceremony: 'second-factor' | 'step-up' | 'passwordless'
  /** The authenticator verified the user (PIN, biometrics): with it a passwordless sign-in is multi-factor. */
  userVerified: boolean
  /**
   * `active`: signed in (or, for step-up, still signed in and fresh). `totp` / `passkey`: a
   * passwordless sign-in without user verification is one factor: the session is pending, like after
   * a password, and waits for another factor (`methods`).
   */
  next: 'active' | 'totp' | 'passkey'
  methods?: Array<'totp' | 'passkey'> | undefined
}

/** What xemsMfa shares with the ceremonies. Internal: not part of the public API. */
export interface MfaCore {
  engine: XemsEngine
  users: MfaUserAdapter
  pendingSandbox: string
  activeSandbox: string
  freshFor: number
  firstFactorKey: string
  admit: (userId: string, known: boolean, log: FastifyBaseLogger, reply?: FastifyReply) => Promise<Admitted>
  failed: (userId: string, known: boolean, factor: string, admitted: Admitted, log: FastifyBaseLogger) => Promise<void>
  recordSuccess: (userId: string) => Promise<void>
  countPendingAttempt: (sessionId: string) => Promise<number>
  carriedData: (data: Record<string, unknown>) => Record<string, unknown>
  promote: (request: FastifyRequest, data: Record<string, unknown>, userId: string, signIn: 'passkey') => Promise<void>
  assertFresh: (request: FastifyRequest, limit: number) => void
  activeSessionOf: (request: FastifyRequest) => { userId: string }
  afterFactorChange: (request: FastifyRequest, userId: string) => Promise<void>
  hasFactor: (record: MfaRecord | null) => boolean
  methodsOf: (record: MfaRecord | null) => Array<'totp' | 'passkey'>
  rememberDevice: (reply: FastifyReply, userId: string) => Promise<void>
}

export type PasskeyApi = Pick<
  XemsMfa,
  'startPasskeyRegistration' | 'finishPasskeyRegistration' | 'startPasskeyAuthentication' | 'finishPasskeyAuthentication' |
  'listPasskeys' | 'removePasskey'
>

const PASSKEY_SANDBOX = 'xems-passkeys'
const TEN_MINUTES = 10 * 60_000
const NAME = /^[^\p{Cc}\p{Cf}]{1,64}$/u

type AuthMode = 'second-factor' | 'step-up' | 'passwordless'
interface WaitingRegistration { challenge: string, userId: string, handle: string }
interface WaitingAuthentication { challenge: string, mode: AuthMode, userId: string | null }

export function createPasskeys (core: MfaCore, options: PasskeyOptions): PasskeyApi {
  const rp = checkRelyingParty(options)
  const challengeTtl = parsePositiveDuration(options.challengeTtl ?? '2m', 'passkeys.challengeTtl')
  if (challengeTtl > TEN_MINUTES) throw badOption('passkeys.challengeTtl', 'must be at most 10 minutes')
  const maxPerUser = options.maxPerUser ?? 10
  if (!Number.isSafeInteger(maxPerUser) || maxPerUser < 1 || maxPerUser > 50) {
    throw badOption('passkeys.maxPerUser', 'must be a whole number from 1 to 50')
  }
  const { engine, users } = core
  const state = engine.from(PASSKEY_SANDBOX)

  const regKey = (sessionId: string): string => `reg:${sessionId}`
  const authKey = (sessionId: string): string => `auth:${sessionId}`
  const usedKey = (challenge: string): string => `used:${challenge}`

  /**
   * Consumes the ceremony this session waits for (exactly once, whatever the answer) and checks the
   * client data against it: the challenge, the ceremony type, the origin.
   */
  async function consume<T extends { challenge: string }> (
    key: string, client: ClientData, type: 'webauthn.create' | 'webauthn.get', log: FastifyBaseLogger
  ): Promise<T> {
    const waiting = await state.take<T>(key)
    if (waiting === null || waiting.challenge !== client.challenge) {
      if (client.challenge.length <= 128 && await state.get(usedKey(client.challenge)) !== null) {
        log.warn({ xems: 'passkey-replay' }, 'xems: a passkey response to a consumed challenge was replayed')
        throw xemsError('FST_XEMS_PASSKEY_REPLAYED')
      }
      throw xemsError('FST_XEMS_PASSKEY_NO_CHALLENGE')
    }
    await state.set(usedKey(waiting.challenge), true, 2 * challengeTtl)
    if (client.type !== type) throw xemsError('FST_XEMS_PASSKEY_CEREMONY')
    if (!rp.origins.includes(client.origin)) {
      log.warn(
        { xems: 'passkey-origin', origin: client.origin.slice(0, 200) },
        'xems: a passkey answer came from an origin not in passkeys.origins'
      )
      throw xemsError('FST_XEMS_PASSKEY_ORIGIN')
    }
    return waiting
  }

  function checkName (name: unknown, fallback: string): string {
    if (name === undefined) return fallback
    if (typeof name !== 'string' || !NAME.test(name.trim())) throw xemsError('FST_XEMS_PASSKEY_BAD_NAME')
    return name.trim()
  }

  function modeOf (request: FastifyRequest): { mode: AuthMode, userId: string | null } | null {
    const session = request.session
    if (session === null || session.destroyed) return null
    if (session.sandbox === core.activeSandbox && session.userId !== undefined) return { mode: 'step-up', userId: session.userId }
    if (session.sandbox === core.pendingSandbox) {
      return session.userId === undefined ? { mode: 'passwordless', userId: null } : { mode: 'second-factor', userId: session.userId }
    }
    return null
  }

  return {
    async startPasskeyRegistration (request, _reply, start = {}) {
      const { userId } = core.activeSessionOf(request)
      const record = await users.load(userId)
      if (core.hasFactor(record)) core.assertFresh(request, core.freshFor)
      const existing = record?.passkeys ?? []
      if (existing.length >= maxPerUser) throw xemsError('FST_XEMS_PASSKEY_LIMIT', [maxPerUser])
      const handle = record?.passkeyUserHandle ?? randomBytes(32).toString('base64url')
      const userName = typeof start.userName === 'string' && start.userName.length > 0 ? start.userName.slice(0, 256) : userId
      const creation = await registrationOptions(rp, { handle, name: userName, displayName: userName }, existing, challengeTtl)
      await state.set(
        regKey(request.session!.id), { challenge: creation.challenge, userId, handle } satisfies WaitingRegistration, challengeTtl
      )
      return creation
    },

    async finishPasskeyRegistration (request, _reply, response, finish = {}) {
      const { userId } = core.activeSessionOf(request)
      const client = readClientData(response)
      const waiting = await consume<WaitingRegistration>(regKey(request.session!.id), client, 'webauthn.create', request.log)
      if (waiting.userId !== userId) throw xemsError('FST_XEMS_PASSKEY_NO_CHALLENGE')
      const before = await users.load(userId)
      // Adding a factor next to an existing one needs that factor, recently, at both steps.
      if (core.hasFactor(before)) core.assertFresh(request, core.freshFor)
      const name = checkName(finish.name, `Passkey ${(before?.passkeys?.length ?? 0) + 1}`)
      const { credential } = await verifyRegistration(rp, response, waiting.challenge, engine.now(), name)
      const record = await users.load(userId) ?? {}
      const list = record.passkeys ?? []
      if (record.passkeyUserHandle !== undefined && record.passkeyUserHandle !== waiting.handle) {
        throw xemsError('FST_XEMS_PASSKEY_NO_CHALLENGE')
      }
      if (list.some((c) => c.id === credential.id)) throw xemsError('FST_XEMS_PASSKEY_EXISTS')
      if (list.length >= maxPerUser) throw xemsError('FST_XEMS_PASSKEY_LIMIT', [maxPerUser])
      await users.save(userId, { ...record, passkeyUserHandle: waiting.handle, passkeys: [...list, credential] })
      await core.afterFactorChange(request, userId)
      request.log.info({ xems: 'passkey-registered', userId }, 'xems: passkey registered')
      engine.security({ type: 'factor-enrolled', at: engine.now(), userId, factor: 'passkey' })
      return publicInfo(credential)
    },

    async startPasskeyAuthentication (request, reply) {
      let ceremony = modeOf(request)
      if (ceremony === null) {
        if (request.session !== null && !request.session.destroyed) throw xemsError('FST_XEMS_NO_SESSION')
        // A passwordless sign-in: an anonymous pending session carries the challenge.
        await reply.xLink({}, { sandbox: core.pendingSandbox, ttl: challengeTtl })
        ceremony = { mode: 'passwordless', userId: null }
      }
      if (ceremony.mode === 'passwordless' && users.findUserByPasskey === undefined) {
        throw badOption('users.findUserByPasskey', 'must be set for passwordless passkey sign-in')
      }
      let allow: PasskeyCredential[] | null = null
      if (ceremony.userId !== null) {
        const first = request.session!.data[core.firstFactorKey]
        allow = ((await users.load(ceremony.userId))?.passkeys ?? []).filter((c) => c.id !== first)
        if (allow.length === 0) throw xemsError('FST_XEMS_PASSKEY_UNKNOWN')
      }
      const requestOptions = await authenticationOptions(rp, allow, challengeTtl)
      await state.set(
        authKey(request.session!.id), { challenge: requestOptions.challenge, ...ceremony } satisfies WaitingAuthentication, challengeTtl
      )
      return requestOptions
    },

    async finishPasskeyAuthentication (request, reply, response, finish = {}) {
      const session = request.session
      const client = readClientData(response)
      const credentialId = responseCredentialId(response)
      if (session === null || session.destroyed) throw xemsError('FST_XEMS_PASSKEY_NO_CHALLENGE')
      const waiting = await consume<WaitingAuthentication>(authKey(session.id), client, 'webauthn.get', request.log)
      const now = modeOf(request)
      if (now === null || now.mode !== waiting.mode || now.userId !== waiting.userId) {
        throw xemsError('FST_XEMS_PASSKEY_NO_CHALLENGE')
      }
      if (waiting.mode !== 'step-up') await core.countPendingAttempt(session.id)
      const unknown = (): XemsError => xemsError('FST_XEMS_PASSKEY_UNKNOWN')
      let userId = waiting.userId
      const handle = responseUserHandle(response)
      if (userId === null) {
        userId = handle === null ? null : await users.findUserByPasskey!(handle)
        if (userId === null) throw unknown()
      }
      const admitted = await core.admit(userId, true, request.log, reply)
      const record = await users.load(userId)
      const credential = record?.passkeys?.find((c) => c.id === credentialId)
      const refuse = async (err: XemsError): Promise<never> => {
        await core.failed(userId, true, 'passkey', admitted, request.log)
        throw err
      }
      if (credential === undefined || credential.id === session.data[core.firstFactorKey] ||
        (handle !== null && handle !== record?.passkeyUserHandle)) return await refuse(unknown())
      const verified = await verifyAssertion(rp, response, waiting.challenge, credential).catch(refuse)
      if (isCounterRollback(credential.counter, verified.newCounter)) {
        request.log.warn(
          { xems: 'passkey-counter-rollback', userId, credentialId }, 'xems: a passkey counter went backwards; the passkey may be cloned'
        )
        engine.security({
          type: 'passkey-counter-rollback',
          at: engine.now(),
          userId,
          credentialId,
          stored: credential.counter,
          presented: verified.newCounter
        })
        return await refuse(xemsError('FST_XEMS_PASSKEY_COUNTER'))
      }
      const fresh = await users.load(userId) ?? {}
      await users.save(userId, {
        ...fresh,
        passkeys: (fresh.passkeys ?? []).map((c) => c.id === credentialId
          ? { ...c, counter: Math.max(c.counter, verified.newCounter), backedUp: verified.backedUp, lastUsedAt: engine.now() }
          : c)
      })
      await core.recordSuccess(userId)

      const base = { method: 'passkey', ceremony: waiting.mode, userVerified: verified.userVerified } as const
      if (waiting.mode === 'step-up') {
        session.data.mfaVerifiedAt = engine.now()
        return { ...base, next: 'active' }
      }
      if (waiting.mode === 'passwordless' && !verified.userVerified) {
        // One factor, like a password: the session stays pending for another one, if there is one.
        const methods = core.methodsOf(record).filter((m) => m !== 'passkey' || (record?.passkeys?.length ?? 0) > 1)
        if (methods.length > 0) {
          await session.migrate(core.pendingSandbox, { userId, data: { [core.firstFactorKey]: credentialId }, signIn: 'passkey' })
          return { ...base, next: methods[0]!, methods }
        }
        await session.migrate(core.activeSandbox, { userId, data: {}, signIn: 'passkey' })
        return { ...base, next: 'active' }
      }
      await core.promote(request, core.carriedData(session.data), userId, 'passkey')
      if (finish.remember === true && waiting.mode === 'second-factor') await core.rememberDevice(reply, userId)
      return { ...base, next: 'active' }
    },

    async listPasskeys (request) {
      const { userId } = core.activeSessionOf(request)
      return ((await users.load(userId))?.passkeys ?? []).map(publicInfo)
    },

    async removePasskey (request, id) {
      const { userId } = core.activeSessionOf(request)
      // Removing a factor, the last one too, needs a second factor verified recently.
      core.assertFresh(request, core.freshFor)
      const record = await users.load(userId) ?? {}
      const list = record.passkeys ?? []
      if (typeof id !== 'string' || !list.some((c) => c.id === id)) throw xemsError('FST_XEMS_PASSKEY_NOT_FOUND')
      await users.save(userId, { ...record, passkeys: list.filter((c) => c.id !== id) })
      await core.afterFactorChange(request, userId)
      request.log.info({ xems: 'passkey-removed', userId }, 'xems: passkey removed')
      engine.security({ type: 'factor-removed', at: engine.now(), userId, factor: 'passkey' })
    }
  }
}
