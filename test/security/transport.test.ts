/**
 * Cookie and transport checks: Cache-Control on every response that sets or clears a token, the
 * __Host- prefix, Path and Domain as configured, no token from a query string, and the ends of a
 * session that the other tests do not cover (disabling MFA ends the user's other sessions).
 */
import type { LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { generateTotp } from '../../lib/mfa/totp.js'
import { buildApp, login, setCookieHeader, setCookieToken } from '../helpers.js'
import { buildMfaApp, post } from '../mfa-app.js'

function noStore (t: Test, response: LightMyRequestResponse, what: string): void {
  t.ok(response.headers['set-cookie'] !== undefined || response.headers['x-xems-token'] !== undefined, `${what}: the response sets or clears a token`)
  t.equal(response.headers['cache-control'], 'no-store', `${what}: Cache-Control: no-store`)
}

t.test('Cache-Control: no-store on every response that sets or clears a token', async (t) => {
  const { app, clock } = await buildApp({ gracePeriod: '2s' })
  t.teardown(async () => { await app.close() })
  // The handler's own caching header must not survive on a response that carries a token.
  app.get('/cacheable', async (_request, reply) => {
    reply.header('cache-control', 'public, max-age=3600')
    return { ok: true }
  })

  const loginResponse = await app.inject({ method: 'POST', url: '/login' })
  noStore(t, loginResponse, 'login')
  const first = setCookieToken(loginResponse)!

  const rotation = await app.inject({ url: '/me', cookies: { xems: first } })
  noStore(t, rotation, 'rotation')
  const second = setCookieToken(rotation)!

  const grace = await app.inject({ url: '/me', cookies: { xems: first } })
  t.equal(grace.statusCode, 200)
  t.equal(setCookieToken(grace), second, 'grace answers the current token')
  noStore(t, grace, 'grace')

  const cacheable = await app.inject({ url: '/cacheable', cookies: { xems: second } })
  noStore(t, cacheable, 'rotation on a route that asked for public caching')
  const third = setCookieToken(cacheable)!

  const regenerated = await app.inject({ method: 'POST', url: '/regenerate', cookies: { xems: third } })
  noStore(t, regenerated, 'regenerate')
  const fourth = setCookieToken(regenerated)!

  const failing = await app.inject({ url: '/boom', cookies: { xems: fourth } })
  t.equal(failing.statusCode, 500)
  noStore(t, failing, 'rotation on an error response')
  const fifth = setCookieToken(failing)!

  const logout = await app.inject({ method: 'POST', url: '/logout', cookies: { xems: fifth } })
  t.equal(setCookieToken(logout), '', 'logout clears the cookie')
  noStore(t, logout, 'logout')

  const victim = await login(app)
  const victimNext = setCookieToken(await app.inject({ url: '/me', cookies: { xems: victim } }))!
  await app.inject({ url: '/me', cookies: { xems: victimNext } })
  clock.advance(2001)
  const reuse = await app.inject({ url: '/me', cookies: { xems: victim } })
  t.equal(reuse.statusCode, 401)
  t.equal(reuse.json().code, 'FST_XEMS_TOKEN_REUSED')
  t.equal(setCookieToken(reuse), '', 'reuse clears the cookie')
  noStore(t, reuse, 'reuse 401')
  t.equal((await app.inject({ url: '/me', cookies: { xems: victimNext } })).statusCode, 401)

  const destroyed = await app.inject({ method: 'POST', url: '/destroy', cookies: { xems: await login(app) } })
  noStore(t, destroyed, 'destroy')

  const headerLogin = await app.inject({ method: 'POST', url: '/login', headers: { 'x-xems-token': '' } })
  noStore(t, headerLogin, 'login of a header client')
  const headerRotation = await app.inject({ url: '/me', headers: { 'x-xems-token': headerLogin.headers['x-xems-token'] as string } })
  noStore(t, headerRotation, 'rotation of a header client')
})

t.test('Cache-Control: no-store on the MFA responses that set a token (pending, promotion, device cookie, enrolment)', async (t) => {
  const ctx = await buildMfaApp()
  const { app, clock } = ctx
  t.teardown(async () => { await app.close() })
  await post(app, '/register', { user: 'ada', password: 'correct horse battery staple' })
  const active = await post(app, '/login', { user: 'ada', password: 'correct horse battery staple' })
  noStore(t, active, 'password step without a factor')
  const enrol = await post(app, '/mfa/enrol', {}, setCookieToken(active))
  noStore(t, enrol, 'enrolment start (carries the TOTP secret)')
  const confirm = await post(app, '/mfa/confirm', { code: await generateTotp({ secret: enrol.json().secret, at: clock.now }) }, setCookieToken(enrol))
  t.equal(confirm.statusCode, 200)
  noStore(t, confirm, 'enrolment confirmation (carries the recovery codes)')
  clock.advance(30_000)
  const pending = await post(app, '/login', { user: 'ada', password: 'correct horse battery staple' })
  t.equal(pending.json().next, 'totp')
  noStore(t, pending, 'pending session')
  const verified = await post(app, '/mfa/verify', { code: await generateTotp({ secret: enrol.json().secret, at: clock.now }), remember: true }, setCookieToken(pending))
  t.equal(verified.statusCode, 200)
  t.ok(verified.cookies.some((cookie) => cookie.name === 'xems_device'), 'a device cookie')
  noStore(t, verified, 'promotion with a device cookie')
})

t.test('a __Host- cookie is Secure, Path=/, without Domain, when set and when cleared', async (t) => {
  const { app } = await buildApp({ cookie: { name: '__Host-xems' } })
  t.teardown(async () => { await app.close() })
  const opened = await app.inject({ method: 'POST', url: '/login' })
  const header = setCookieHeader(opened)
  t.match(header, /^__Host-xems=[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43};/)
  t.match(header, /; Secure/)
  t.match(header, /; Path=\/(;|$)/)
  t.match(header, /; HttpOnly/)
  t.notMatch(header, /Domain=/i)
  const token = setCookieToken(opened, '__Host-xems')!
  const me = await app.inject({ url: '/me', cookies: { '__Host-xems': token } })
  t.equal(me.statusCode, 200, 'the prefixed cookie carries the session')
  t.equal((await app.inject({ url: '/me', cookies: { xems: setCookieToken(me, '__Host-xems')! } })).statusCode, 401, 'the unprefixed name is not read')
  const logout = await app.inject({ method: 'POST', url: '/logout', cookies: { '__Host-xems': setCookieToken(me, '__Host-xems')! } })
  const cleared = setCookieHeader(logout)
  t.match(cleared, /^__Host-xems=;/, 'logout clears it')
  t.match(cleared, /; Secure/, 'the clearing cookie is Secure too (browsers ignore a __Host- cookie without it)')
  t.match(cleared, /; Path=\/(;|$)/)
  t.notMatch(cleared, /Domain=/i)
})

t.test('a narrowed cookie carries the configured Path and Domain, also when cleared', async (t) => {
  const { app } = await buildApp({ cookie: { path: '/app', domain: 'example.com', sameSite: 'strict', secure: true } })
  t.teardown(async () => { await app.close() })
  const opened = await app.inject({ method: 'POST', url: '/login' })
  const header = setCookieHeader(opened)
  t.match(header, /; Path=\/app(;|$)/)
  t.match(header, /; Domain=example\.com(;|$)/)
  t.match(header, /; SameSite=Strict/)
  t.match(header, /; Secure/)
  t.match(header, /; HttpOnly/)
  const cleared = setCookieHeader(await app.inject({ method: 'POST', url: '/logout', cookies: { '__Secure-xems': setCookieToken(opened, '__Secure-xems')! } }))
  t.match(cleared, /^__Secure-xems=;.*; Path=\/app(;|$)/, 'named __Secure-xems by default: secure, but a __Host- name cannot carry a Domain')
  t.match(cleared, /; Domain=example\.com(;|$)/)
})

t.test('no token is accepted from a query string or a request body', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  const token = await login(app)
  for (const name of ['xems', 'x-xems-token', 'token', 'session']) {
    const guarded = await app.inject({ url: `/me?${name}=${token}` })
    t.equal(guarded.statusCode, 401, `?${name}=<valid token> on a guarded route: 401`)
    t.equal(guarded.json().code, 'FST_XEMS_NO_SESSION')
    const open = await app.inject({ url: `/public?${name}=${encodeURIComponent(token)}` })
    t.same(open.json(), { sandbox: null }, `?${name}=<valid token> on an open route: no session`)
    t.equal(open.headers['set-cookie'], undefined, 'and no token in the answer')
  }
  const inBody = await app.inject({ method: 'POST', url: '/me', payload: { xems: token, 'x-xems-token': token, key: 'k', value: 1 } })
  t.equal(inBody.statusCode, 401, 'nor from a request body')
  const me = await app.inject({ url: '/me', cookies: { xems: token } })
  t.equal(me.statusCode, 200, 'the token was valid all along (by cookie)')
  const loginWithQuery = await app.inject({ method: 'POST', url: `/login?xems=${setCookieToken(me)!}` })
  t.not(setCookieToken(loginWithQuery), setCookieToken(me), 'a login never adopts a token from the query either')
})

t.test('disabling MFA ends the user\'s other sessions and gives this one a new token', async (t) => {
  const ctx = await buildMfaApp()
  const { app, clock } = ctx
  t.teardown(async () => { await app.close() })
  await post(app, '/register', { user: 'ada', password: 'correct horse battery staple' })
  const here = setCookieToken(await post(app, '/login', { user: 'ada', password: 'correct horse battery staple' }))!
  const enrol = await post(app, '/mfa/enrol', {}, here)
  const confirm = await post(app, '/mfa/confirm', { code: await generateTotp({ secret: enrol.json().secret, at: clock.now }) }, setCookieToken(enrol))
  t.equal(confirm.statusCode, 200)
  clock.advance(30_000)
  const secret = enrol.json().secret as string
  // Disabling needs a fresh second factor (enrolment gives none): this session signs in with a code.
  const pending = setCookieToken(await post(app, '/login', { user: 'ada', password: 'correct horse battery staple' }))!
  const here2 = setCookieToken(await post(app, '/mfa/verify', { code: await generateTotp({ secret, at: clock.now }) }, pending))!
  const elsewhere = setCookieToken(await app.inject({ url: '/me', cookies: { xems: setCookieToken(confirm)! } }))!
  t.equal((await app.inject({ url: '/me', cookies: { xems: elsewhere } })).statusCode, 200, 'a second signed-in session')
  const me = await app.inject({ url: '/me', cookies: { xems: here2 } })
  const beforeDisable = setCookieToken(me)!
  const disabled = await post(app, '/mfa/disable', {}, beforeDisable)
  t.equal(disabled.statusCode, 200)
  t.equal(
    (await app.inject({ url: '/me', cookies: { xems: setCookieToken(await app.inject({ url: '/me', cookies: { xems: elsewhere } }))! } })).statusCode, 401,
    'the other session ended'
  )
  t.equal((await app.inject({ url: '/me', cookies: { xems: beforeDisable } })).statusCode, 401, 'the token before the change is dead, without grace')
  t.equal((await app.inject({ url: '/me', cookies: { xems: setCookieToken(disabled)! } })).statusCode, 200, 'this session lives on with its new token')
})
