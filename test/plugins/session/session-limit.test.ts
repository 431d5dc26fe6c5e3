/**
 * maxSessionsPerUser through the plugin: sign-ins over the cap end the oldest session (its token then
 * answers 401 FST_XEMS_NO_SESSION, not the theft signal) or are refused with 409 FST_XEMS_SESSION_LIMIT,
 * for xLink and for a migration that gives a pending session its user; bad options fail at register.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import t from 'tap'
import { xemsSession, type XemsSessionOptions } from '../../../index.js'
import type { SecurityEvent } from '../../../lib/security-events.js'
import { setCookieToken } from '../../helpers.js'

async function limitApp (options: XemsSessionOptions): Promise<{ app: FastifyInstance, events: SecurityEvent[] }> {
  const events: SecurityEvent[] = []
  const app = Fastify()
  await app.register(xemsSession, { cookie: { secure: false }, onSecurityEvent: (event) => { events.push(event) }, ...options })
  app.post<{ Body: { user: string } }>('/login', async (request, reply) => {
    await reply.xLink({}, { userId: request.body.user })
    return { ok: true }
  })
  // Two steps, as with MFA: a pending session without a user, then a migration that gives it one.
  app.post('/start', async (_request, reply) => {
    await reply.xLink({}, 'otp-pending')
    return { ok: true }
  })
  app.post<{ Body: { user: string } }>('/verify', { preHandler: app.xems.requireSession('otp-pending') }, async (request) => {
    await request.session!.migrate('auth-active', { userId: request.body.user })
    return { ok: true }
  })
  app.get('/me', { preHandler: app.xems.requireSession() }, async (request) => ({ userId: request.session!.userId }))
  return { app, events }
}

async function login (app: FastifyInstance, user: string): Promise<{ statusCode: number, token: string | undefined, code: string | undefined }> {
  const response = await app.inject({ method: 'POST', url: '/login', payload: { user } })
  return { statusCode: response.statusCode, token: setCookieToken(response), code: response.json().code }
}

async function me (app: FastifyInstance, token: string): Promise<{ statusCode: number, code: string | undefined }> {
  const response = await app.inject({ method: 'GET', url: '/me', cookies: { xems: token } })
  return { statusCode: response.statusCode, code: response.json().code }
}

t.test("end-oldest: the 4th sign-in of a user ends the first session, which then answers 401 'no session', with a security event", async (t) => {
  const { app, events } = await limitApp({ maxSessionsPerUser: { limit: 3, onLimit: 'end-oldest' } })
  t.teardown(async () => { await app.close() })
  const first = await login(app, 'ada')
  await login(app, 'ada')
  await login(app, 'ada')
  t.equal((await me(app, first.token!)).statusCode, 200, 'three sessions: all live')
  const fourth = await login(app, 'ada')
  t.equal(fourth.statusCode, 200, 'the 4th sign-in succeeds')
  t.same(await me(app, first.token!), { statusCode: 401, code: 'FST_XEMS_NO_SESSION' }, 'the oldest session is gone')
  t.equal((await me(app, fourth.token!)).statusCode, 200)
  t.equal((await app.xems.listUserSessions('ada')).length, 3)
  t.notOk(events.some((event) => event.type === 'theft'), 'no theft signal for the ended session')
  const ended = events.filter((event) => event.type === 'session-limit-ended')
  t.equal(ended.length, 1)
  t.match(ended[0], { type: 'session-limit-ended', userId: 'ada', id: String, by: String, reason: 'max-sessions-per-user', at: Number })
  const listed = (await app.xems.listUserSessions('ada')).map((session) => session.id)
  t.notOk(listed.includes((ended[0] as { id: string }).id), 'the event names the ended session')
  t.ok(listed.includes((ended[0] as { by: string }).by), '…and the new one')
  t.equal((await login(app, 'bob')).statusCode, 200, 'another user is not affected')
  t.equal((await app.xems.listUserSessions('ada')).length, 3)
})

t.test('refuse: the 4th sign-in answers 409 FST_XEMS_SESSION_LIMIT, sets no cookie, and the others live on', async (t) => {
  const { app, events } = await limitApp({ maxSessionsPerUser: { limit: 3, onLimit: 'refuse' } })
  t.teardown(async () => { await app.close() })
  const tokens = [await login(app, 'ada'), await login(app, 'ada'), await login(app, 'ada')].map((l) => l.token!)
  const refused = await login(app, 'ada')
  t.equal(refused.statusCode, 409)
  t.equal(refused.code, 'FST_XEMS_SESSION_LIMIT')
  t.equal(refused.token, undefined, 'no session cookie')
  for (const token of tokens) t.equal((await me(app, token)).statusCode, 200)
  t.match(events.find((event) => event.type === 'session-limit-refused'), { userId: 'ada', reason: 'max-sessions-per-user' })
  // signing out of one makes room
  const [oldest] = await app.xems.listUserSessions('ada')
  t.equal(await app.xems.revokeSession('ada', oldest!.id), true)
  t.equal((await login(app, 'ada')).statusCode, 200, 'after one ended, a sign-in is admitted again')
})

t.test('refuse, 200 parallel sign-ins of one user over HTTP inject: 3 get a session, 197 get 409', async (t) => {
  const { app } = await limitApp({ maxSessionsPerUser: { limit: 3, onLimit: 'refuse' } })
  t.teardown(async () => { await app.close() })
  const results = await Promise.all(Array.from({ length: 200 }, async () => await login(app, 'ada')))
  t.equal(results.filter((r) => r.statusCode === 200).length, 3)
  t.equal(results.filter((r) => r.statusCode === 409 && r.code === 'FST_XEMS_SESSION_LIMIT').length, 197)
  t.equal((await app.xems.listUserSessions('ada')).length, 3)
})

t.test('a migration that gives a pending session its user is held to the cap too', async (t) => {
  const { app } = await limitApp({ maxSessionsPerUser: { limit: 1, onLimit: 'refuse' } })
  t.teardown(async () => { await app.close() })
  t.equal((await login(app, 'ada')).statusCode, 200)
  const start = await app.inject({ method: 'POST', url: '/start' })
  const pending = setCookieToken(start)!
  const verify = await app.inject({ method: 'POST', url: '/verify', cookies: { xems: pending }, payload: { user: 'ada' } })
  t.equal(verify.statusCode, 409)
  t.equal(verify.json().code, 'FST_XEMS_SESSION_LIMIT')
  t.equal((await app.xems.listUserSessions('ada')).length, 1, 'nothing moved')
  const again = await app.inject({ method: 'POST', url: '/verify', cookies: { xems: pending }, payload: { user: 'bob' } })
  t.equal(again.statusCode, 200, 'the pending session is still usable (for another user, here)')
})

t.test('end-oldest over a migration: the earlier sign-in ends', async (t) => {
  const { app } = await limitApp({ maxSessionsPerUser: { limit: 1, onLimit: 'end-oldest' } })
  t.teardown(async () => { await app.close() })
  const first = await login(app, 'ada')
  const pending = setCookieToken(await app.inject({ method: 'POST', url: '/start' }))!
  const verify = await app.inject({ method: 'POST', url: '/verify', cookies: { xems: pending }, payload: { user: 'ada' } })
  t.equal(verify.statusCode, 200)
  t.same(await me(app, first.token!), { statusCode: 401, code: 'FST_XEMS_NO_SESSION' })
  t.equal((await me(app, setCookieToken(verify)!)).statusCode, 200)
})

t.test('a bad maxSessionsPerUser fails at register, naming the option', async (t) => {
  const bad: Array<[unknown, string]> = [
    [3, 'maxSessionsPerUser'],
    [{ limit: 0, onLimit: 'refuse' }, 'maxSessionsPerUser.limit'],
    [{ limit: 1.5, onLimit: 'refuse' }, 'maxSessionsPerUser.limit'],
    [{ limit: 1001, onLimit: 'refuse' }, 'maxSessionsPerUser.limit'],
    [{ limit: 3 }, 'maxSessionsPerUser.onLimit'],
    [{ limit: 3, onLimit: 'oldest' }, 'maxSessionsPerUser.onLimit']
  ]
  for (const [value, option] of bad) {
    const app = Fastify()
    await t.rejects(
      async () => { await app.register(xemsSession, { maxSessionsPerUser: value as never }).ready() },
      { code: 'FST_XEMS_BAD_OPTION', message: new RegExp(`option "${option.replace('.', '\\.')}"`) }, JSON.stringify(value)
    )
    await app.close().catch(() => {})
  }
})

t.test('off by default: any number of sessions per user', async (t) => {
  const { app } = await limitApp({})
  t.teardown(async () => { await app.close() })
  for (let i = 0; i < 20; i++) t.equal((await login(app, 'ada')).statusCode, 200)
  t.equal((await app.xems.listUserSessions('ada')).length, 20)
})
