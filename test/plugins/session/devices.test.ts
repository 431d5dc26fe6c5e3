import Fastify, { type FastifyInstance } from 'fastify'
import t from 'tap'
import { xemsSession, type XemsSessionOptions } from '../../../index.js'
import type { SecurityEvent } from '../../../lib/security-events.js'
import { DEVICE_KEY } from '../../../lib/store/contract.js'
import { setCookieToken } from '../../helpers.js'

const CHROME = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
const FIREFOX = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0'
const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'

async function devicesApp (options: XemsSessionOptions = {}): Promise<{ app: FastifyInstance, events: SecurityEvent[] }> {
  const events: SecurityEvent[] = []
  const app = Fastify({ trustProxy: true })
  await app.register(xemsSession, { cookie: { secure: false }, onSecurityEvent: (event) => { events.push(event) }, ...options })
  app.post<{ Body: { user: string } }>('/login', async (request, reply) => {
    await reply.xLink({ who: request.body.user }, { userId: request.body.user, signIn: 'password' })
    return { ok: true }
  })
  app.get('/devices', { preHandler: app.xems.requireSession() }, async (request) =>
    await app.xems.listUserSessions(request.session!.userId!, { current: request }))
  app.post<{ Params: { id: string } }>('/devices/:id/sign-out', { preHandler: app.xems.requireSession() }, async (request) =>
    ({ ended: await app.xems.revokeSession(request.session!.userId!, request.params.id) }))
  app.post('/sign-out-others', { preHandler: app.xems.requireSession() }, async (request) =>
    ({ ended: await app.xems.revokeUser(request.session!.userId!, { except: request.session!.id }) }))
  app.post('/logout', async (_request, reply) => {
    await reply.xUnlink()
    return { ok: true }
  })
  app.post('/logout-everywhere', async (request, reply) => {
    const userId = request.session?.userId
    await reply.xUnlink({ clearSiteData: ['cache', 'storage'] })
    return { ended: userId === undefined ? 0 : await app.xems.revokeUser(userId) }
  })
  app.post<{ Body: Record<string, unknown> }>('/data', { preHandler: app.xems.requireSession() }, async (request) => {
    Object.assign(request.session!.data, request.body)
    return { ok: true }
  })
  app.get('/me', { preHandler: app.xems.requireSession() }, async (request) => ({ data: request.session!.data, device: request.session!.device }))
  return { app, events }
}

type Answer = Promise<{ statusCode: number, json: () => any, headers: Record<string, unknown> }>
type Send = (method: 'GET' | 'POST', url: string, body?: unknown, headers?: Record<string, string>) => Answer

/** A client that follows its cookie jar: one token, replaced by every rotation. */
function client (app: FastifyInstance, ua: string, ip: string): { token: string, send: Send } {
  const c = {
    token: '',
    async send (method: 'GET' | 'POST', url: string, body?: unknown, headers: Record<string, string> = {}) {
      const response = await app.inject({
        method,
        url,
        headers: { 'user-agent': ua, 'x-forwarded-for': ip, ...headers },
        ...(c.token === '' ? {} : { cookies: { xems: c.token } }),
        ...(body === undefined ? {} : { payload: body as Record<string, unknown> })
      })
      const next = setCookieToken(response)
      if (next !== undefined) c.token = next
      return response
    }
  }
  return c
}

t.test('each session records its device; the list is newest first with the current one marked', async (t) => {
  const { app } = await devicesApp()
  t.teardown(async () => { await app.close() })
  const laptop = client(app, CHROME, '203.0.113.7')
  const phone = client(app, IPHONE, '198.51.100.9')
  t.equal((await laptop.send('POST', '/login', { user: 'ada' })).statusCode, 200)
  await new Promise((resolve) => setTimeout(resolve, 5))
  t.equal((await phone.send('POST', '/login', { user: 'ada' })).statusCode, 200)
  const listed = (await laptop.send('GET', '/devices')).json()
  t.equal(listed.length, 2)
  t.same(listed.map((s: any) => s.current), [true, false], 'this device first: it was used last, and it is marked')
  t.match(listed[0].device, { browser: 'Chrome', os: 'Linux', type: 'desktop', ip: '203.0.113.7', userAgent: CHROME, signIn: 'password' })
  t.match(listed[1].device, { browser: 'Safari', type: 'mobile', ip: '198.51.100.9' })
  t.match(listed[1].device.os, /^iOS/)
  t.match(listed[0], { id: String, sandbox: 'auth-active', userId: 'ada', createdAt: Number, lastSeenAt: Number, expiresAt: Number })
  const fromPhone = (await phone.send('GET', '/devices')).json()
  t.same(fromPhone.map((s: any) => s.current), [true, false], 'seen from the phone, the phone is this device')
  const me = (await laptop.send('GET', '/me')).json()
  t.notOk(DEVICE_KEY in me.data, 'the device record is not in the application data')
  t.equal(me.device.browser, 'Chrome', 'request.session.device')
})

t.test('a new IP or user agent updates the record with the request\'s commit; recordIp: false keeps no IP', async (t) => {
  const { app } = await devicesApp()
  t.teardown(async () => { await app.close() })
  const laptop = client(app, CHROME, '203.0.113.7')
  await laptop.send('POST', '/login', { user: 'ada' })
  await laptop.send('GET', '/me', undefined, { 'x-forwarded-for': '192.0.2.44', 'user-agent': FIREFOX })
  const [session] = await app.xems.listUserSessions('ada')
  t.match(session!.device, { ip: '192.0.2.44', browser: 'Firefox', os: 'Windows 10', userAgent: FIREFOX, signIn: 'password' })

  const { app: quiet } = await devicesApp({ recordIp: false })
  t.teardown(async () => { await quiet.close() })
  const other = client(quiet, 'x'.repeat(5000), '203.0.113.7')
  await other.send('POST', '/login', { user: 'bob' })
  await other.send('GET', '/me')
  const [kept] = await quiet.xems.listUserSessions('bob')
  t.notOk('ip' in kept!.device!, 'no IP kept')
  t.equal(kept!.device!.userAgent.length, 512, 'the user agent is cut to 512 bytes')
  t.ok(JSON.stringify(kept!.device).length < 1000, 'one record stays under 1 kB')
})

t.test('the reserved data key cannot be set by the application', async (t) => {
  const { app } = await devicesApp()
  t.teardown(async () => { await app.close() })
  const laptop = client(app, CHROME, '203.0.113.7')
  await laptop.send('POST', '/login', { user: 'ada' })
  const response = await laptop.send('POST', '/data', { [DEVICE_KEY]: { ip: 'forged' } })
  t.equal(response.statusCode, 500, 'a programming error, not stored')
  const [session] = await app.xems.listUserSessions('ada')
  t.equal(session!.device!.ip, '203.0.113.7')
})

t.test('revokeSession ends one session of the user, refuses ids of other users; the ended device gets 401', async (t) => {
  const { app, events } = await devicesApp()
  t.teardown(async () => { await app.close() })
  const laptop = client(app, CHROME, '203.0.113.7')
  const phone = client(app, IPHONE, '198.51.100.9')
  const mallory = client(app, FIREFOX, '192.0.2.66')
  await laptop.send('POST', '/login', { user: 'ada' })
  await phone.send('POST', '/login', { user: 'ada' })
  await mallory.send('POST', '/login', { user: 'mallory' })
  const [adaPhone] = (await laptop.send('GET', '/devices')).json().filter((s: any) => !s.current)
  const [malloryOwn] = (await mallory.send('GET', '/devices')).json()
  t.same((await mallory.send('POST', `/devices/${adaPhone.id as string}/sign-out`)).json(), { ended: false }, 'an id of another user\'s session is refused')
  t.equal((await phone.send('GET', '/me')).statusCode, 200, 'the phone is still signed in')
  t.same((await laptop.send('POST', `/devices/${malloryOwn.id as string}/sign-out`)).json(), { ended: false })
  t.same((await laptop.send('POST', '/devices/not-an-id/sign-out')).json(), { ended: false })
  t.same((await laptop.send('POST', `/devices/${adaPhone.id as string}/sign-out`)).json(), { ended: true })
  t.equal((await phone.send('GET', '/me')).statusCode, 401, 'the phone\'s next request has no session')
  t.equal((await laptop.send('GET', '/me')).statusCode, 200, 'this device stays signed in')
  t.match(events.find((e) => e.type === 'session-revoked'), { type: 'session-revoked', userId: 'ada', id: adaPhone.id })
})

t.test('100 parallel sign-outs of one session: exactly one ends it', async (t) => {
  const { app } = await devicesApp()
  t.teardown(async () => { await app.close() })
  const laptop = client(app, CHROME, '203.0.113.7')
  const phone = client(app, IPHONE, '198.51.100.9')
  await laptop.send('POST', '/login', { user: 'ada' })
  await phone.send('POST', '/login', { user: 'ada' })
  const [target] = (await app.xems.listUserSessions('ada')).filter((s) => s.device?.type === 'mobile')
  const results = await Promise.all(Array.from({ length: 100 }, async () => await app.xems.revokeSession('ada', target!.id)))
  t.equal(results.filter(Boolean).length, 1)
})

t.test('sign out all others keeps this device; logout answers are never cached; Clear-Site-Data on request', async (t) => {
  const { app, events } = await devicesApp({ clearSiteData: ['cache'] })
  t.teardown(async () => { await app.close() })
  const laptop = client(app, CHROME, '203.0.113.7')
  const phone = client(app, IPHONE, '198.51.100.9')
  const tablet = client(app, FIREFOX, '198.51.100.10')
  await laptop.send('POST', '/login', { user: 'ada' })
  await phone.send('POST', '/login', { user: 'ada' })
  await tablet.send('POST', '/login', { user: 'ada' })
  t.same((await laptop.send('POST', '/sign-out-others')).json(), { ended: 2 })
  t.equal((await phone.send('GET', '/me')).statusCode, 401)
  t.equal((await laptop.send('GET', '/me')).statusCode, 200)
  t.match(events.find((e) => e.type === 'user-revoked'), { userId: 'ada', count: 2, except: String })
  const out = await laptop.send('POST', '/logout')
  t.equal(out.headers['cache-control'], 'no-store')
  t.equal(out.headers['clear-site-data'], '"cache"', 'the option\'s default')
  const again = client(app, CHROME, '203.0.113.7')
  await again.send('POST', '/login', { user: 'ada' })
  const everywhere = await again.send('POST', '/logout-everywhere')
  t.equal(everywhere.headers['cache-control'], 'no-store')
  t.equal(everywhere.headers['clear-site-data'], '"cache", "storage"', 'per call')
  const anonymous = await client(app, CHROME, '1.2.3.4').send('POST', '/logout')
  t.equal(anonymous.headers['cache-control'], 'no-store', 'even without a session')
  await t.rejects(devicesApp({ clearSiteData: ['everything' as 'cache'] }), { code: 'FST_XEMS_BAD_OPTION' })
})

t.test('security events: new device, theft with both uses; no token, cookie or secret in any event', async (t) => {
  const { app, events } = await devicesApp({ gracePeriod: 0, unseenWindow: '1s' })
  t.teardown(async () => { await app.close() })
  const laptop = client(app, CHROME, '203.0.113.7')
  await laptop.send('POST', '/login', { user: 'ada' })
  t.match(events.filter((e) => e.type === 'new-device'), [{ userId: 'ada', device: { browser: 'Chrome' } }], 'the first sign-in is a new device')
  const again = client(app, CHROME, '203.0.113.8')
  await again.send('POST', '/login', { user: 'ada' })
  t.equal(events.filter((e) => e.type === 'new-device').length, 1, 'the same kind of device is not new')
  await client(app, IPHONE, '198.51.100.9').send('POST', '/login', { user: 'ada' })
  t.equal(events.filter((e) => e.type === 'new-device').length, 2, 'a phone is')
  const tokens = [laptop.token]
  const stolen = laptop.token
  await laptop.send('GET', '/me')
  tokens.push(laptop.token)
  await laptop.send('GET', '/me')
  tokens.push(laptop.token)
  await new Promise((resolve) => setTimeout(resolve, 1100))
  const thief = await app.inject({ url: '/me', cookies: { xems: stolen }, headers: { 'user-agent': FIREFOX, 'x-forwarded-for': '192.0.2.66' } })
  t.equal(thief.statusCode, 401)
  const theft = events.find((e) => e.type === 'theft')
  t.match(theft, {
    type: 'theft',
    userId: 'ada',
    revoked: true,
    id: String,
    lastUse: { ip: '203.0.113.7', userAgent: CHROME, browser: 'Chrome' },
    presented: { ip: '192.0.2.66', userAgent: FIREFOX, browser: 'Firefox' }
  })
  const text = JSON.stringify(events)
  for (const token of [...tokens, again.token]) {
    t.notOk(text.includes(token), 'no token')
    t.notOk(text.includes(token.split('.')[0]!), 'no locator')
    t.notOk(text.includes(token.split('.')[1]!), 'no secret')
  }
})
