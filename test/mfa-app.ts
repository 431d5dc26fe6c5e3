/**
 * The MFA test app, shared by test/plugins/mfa/mfa.test.ts and the security tests: xemsSession + xemsMfa
 * routes, a logger whose every line is kept (level configurable), an injectable clock, and a user map.
 */
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { xemsSession, type XemsSessionOptions } from '../index.js'
import { hashPassword } from '../lib/mfa/password.js'
import { generateTotp } from '../lib/mfa/totp.js'
import { xemsMfa, type MfaRecord, type XemsMfa, type XemsMfaOptions } from '../plugins/mfa/index.js'
import { makeClock, setCookieToken, type Clock } from './helpers.js'

export interface User { passwordHash: string, mfa: MfaRecord }

export interface MfaApp {
  app: FastifyInstance
  clock: Clock
  users: Map<string, User>
  logs: string[]
  /** The routes context's xemsMfa (it is not on `app`: the plugin decorates its own context). */
  mfa: XemsMfa
}

export interface MfaAppOptions {
  session?: XemsSessionOptions
  mfa?: Partial<XemsMfaOptions>
  logLevel?: 'trace' | 'debug' | 'info' | 'warn'
  /** Share a clock and a user database between apps (two instances of one service). */
  clock?: Clock
  users?: Map<string, User>
}

/** Routes: /register /login /mfa/* /passkeys/* /sensitive /me /public /logout /revoke/:user; every log line lands in `logs`. */
export async function buildMfaApp (options: MfaAppOptions = {}): Promise<MfaApp> {
  // Start mid-step so that "the next step" is always 30 s away.
  const clock = options.clock ?? makeClock(Math.floor(Date.now() / 30_000) * 30_000 + 1000)
  const users = options.users ?? new Map<string, User>()
  const logs: string[] = []
  let mfaApi: XemsMfa | undefined
  const app = Fastify({ logger: { level: options.logLevel ?? 'info', stream: { write: (line: string) => { logs.push(line) } } } })
  await app.register(xemsSession, {
    cookie: { secure: false },
    clock: () => clock.now,
    sandboxes: { 'otp-pending': { ttl: '15m' } },
    ...options.session
  })
  app.get('/me', { preHandler: app.xems.requireSession() }, async (request) => ({ userId: request.session!.userId, data: request.session!.data }))
  app.get('/public', async (request) => ({ sandbox: request.session?.sandbox ?? null }))
  app.post('/logout', async (_request, reply) => {
    await reply.xUnlink()
    return { ok: true }
  })

  await app.register(async (routes) => {
    await routes.register(xemsMfa, {
      issuer: 'Example',
      users: {
        load: async (userId) => users.get(userId)?.mfa ?? null,
        save: async (userId, record) => { users.get(userId)!.mfa = structuredClone(record) },
        findUserByPasskey: async (handle) => [...users.entries()].find(([, user]) => user.mfa.passkeyUserHandle === handle)?.[0] ?? null
      },
      rememberDevice: { secure: false },
      ...options.mfa
    })
    const mfa = routes.xemsMfa
    mfaApi = mfa
    routes.post<{ Body: { user: string, password: string } }>('/register', async (request) => {
      users.set(request.body.user, { passwordHash: await hashPassword(request.body.password), mfa: {} })
      return { ok: true }
    })
    routes.post<{ Body: { user: string, password: string } }>('/login', async (request, reply) => {
      const user = users.get(request.body.user)
      const ok = await mfa.verifyPassword(request.body.user, request.body.password, user?.passwordHash, request)
      if (!ok) return await reply.code(401).send({ error: 'wrong user or password' })
      return await mfa.begin(request, reply, { userId: request.body.user, data: { name: request.body.user } })
    })
    routes.post<{ Body: { code: unknown, remember?: boolean } }>('/mfa/verify', async (request, reply) =>
      await mfa.verify(request, reply, request.body?.code, { remember: request.body?.remember === true }))
    routes.post('/mfa/enrol', async (request) => await mfa.startEnrolment(request))
    routes.post<{ Body: { code: unknown } }>('/mfa/confirm', async (request) => await mfa.confirmEnrolment(request, request.body?.code))
    routes.post<{ Body: { code: unknown } }>('/mfa/step-up', async (request, reply) => await mfa.stepUp(request, reply, request.body?.code))
    routes.get('/sensitive', { preHandler: mfa.requireFreshMfa('10m') }, async () => ({ ok: true }))
    routes.post('/mfa/disable', { preHandler: mfa.requireFreshMfa('10m') }, async (request) => { await mfa.disable(request); return { ok: true } })
    routes.post('/mfa/recovery-codes', { preHandler: mfa.requireFreshMfa('10m') }, async (request) => ({ codes: await mfa.regenerateRecoveryCodes(request) }))
    routes.post('/passkeys/register/start', async (request, reply) => await mfa.startPasskeyRegistration(request, reply))
    routes.post<{ Body: { response: unknown, name?: string } }>('/passkeys/register/finish', async (request, reply) =>
      await mfa.finishPasskeyRegistration(request, reply, request.body?.response, { name: request.body?.name }))
    routes.post('/passkeys/auth/start', async (request, reply) => await mfa.startPasskeyAuthentication(request, reply))
    routes.post<{ Body: { response: unknown, remember?: boolean } }>('/passkeys/auth/finish', async (request, reply) =>
      await mfa.finishPasskeyAuthentication(request, reply, request.body?.response, { remember: request.body?.remember === true }))
    routes.get('/passkeys', async (request) => await mfa.listPasskeys(request))
    routes.post<{ Body: { id: string } }>('/passkeys/remove', async (request) => { await mfa.removePasskey(request, request.body.id); return { ok: true } })
    routes.post<{ Params: { user: string } }>('/revoke/:user', async (request) => ({ count: await mfa.revokeUser(request.params.user) }))
  })
  return {
    app,
    clock,
    users,
    logs,
    get mfa (): XemsMfa {
      if (mfaApi === undefined) throw new Error('the app has not loaded its plugins yet: await app.ready() first')
      return mfaApi
    }
  }
}

export async function post (app: FastifyInstance, url: string, payload: unknown, token?: string, cookies: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url, payload: payload as Record<string, unknown>, cookies: { ...cookies, ...(token === undefined ? {} : { xems: token }) } })
}

/**
 * Registers ada, signs her in and enrols a TOTP factor with a first code; then moves the clock 30 s,
 * so that the enrolment code's step is used up. Returns the TOTP secret and the recovery codes.
 */
export async function enrolAda (ctx: MfaApp, password: string): Promise<{ secret: string, recoveryCodes: string[] }> {
  const { app, clock } = ctx
  await post(app, '/register', { user: 'ada', password })
  const login = await post(app, '/login', { user: 'ada', password })
  const enrol = await post(app, '/mfa/enrol', {}, setCookieToken(login))
  const secret = enrol.json().secret as string
  const confirm = await post(app, '/mfa/confirm', { code: await generateTotp({ secret, at: clock.now }) }, setCookieToken(enrol))
  if (confirm.statusCode !== 200) throw new Error(confirm.body)
  clock.advance(30_000)
  return { secret, recoveryCodes: confirm.json().recoveryCodes }
}
