import Fastify, { type FastifyInstance } from 'fastify'
import t from 'tap'
import { secretKeyOf } from '../../../lib/session/token.js'
import { MemoryStore, xems, xemsSession, type SessionStore } from '../../../index.js'
import { generateToken } from '../../../lib/crypto/random-token.js'
import { XemsEngine } from '../../../lib/session/engine.js'
import { engineOf } from '../../../plugins/session/engine-access.js'
import { buildApp, setCookieToken } from '../../helpers.js'

t.test('from(sandbox): set / get / del / add / take with per-sandbox lifetimes', async (t) => {
  const { app, clock } = await buildApp({ sandboxes: { 'users-registry': { ttl: '5d' }, 'otp-pending': { ttl: '10m' } } })
  t.teardown(async () => { await app.close() })
  const users = app.xems.from('users-registry')
  await users.set('ada', { name: 'Ada', roles: ['admin'] })
  t.same(await users.get('ada'), { name: 'Ada', roles: ['admin'] })
  t.equal(await app.xems.from('auth-active').get('ada'), null, 'sandboxes are separate keyspaces')
  await app.xems.from('otp-pending').set('challenge', 'c1')
  await users.set('short', 1, '1s')
  clock.advance(1000)
  t.equal(await users.get('short'), null, 'an explicit ttl')
  clock.advance(10 * 60_000)
  t.equal(await app.xems.from('otp-pending').get('challenge'), null, 'the sandbox ttl (10m)')
  t.same(await users.get('ada'), { name: 'Ada', roles: ['admin'] }, 'the users-registry ttl (5d)')
  t.equal(await users.del('ada'), true)
  t.equal(await users.get('ada'), null)
  t.equal(await users.add('once', 1), true)
  t.equal(await users.add('once', 2), false)
  t.equal(await users.take('once'), 1)
  t.equal(await users.take('once'), null)
  await t.rejects(users.set('x', 1, '6d'), { code: 'FST_XEMS_BAD_OPTION', message: /must not exceed maxAge/ }, 'nothing lives longer than the cap')
  await t.rejects(users.set('', 1), { code: 'FST_XEMS_BAD_VALUE' })
  await t.rejects(users.set('fn', () => 1), { code: 'FST_XEMS_BAD_VALUE' })
  await t.rejects(users.set('big', 10n), { code: 'FST_XEMS_BAD_VALUE', message: /not JSON-serialisable/ })
  t.throws(() => app.xems.from('bad name'), { code: 'FST_XEMS_BAD_SANDBOX' })
})

t.test('createSession / resolveSession / migrate / destroySession / revokeUser / listUserSessions', async (t) => {
  const { app, clock } = await buildApp({ sandboxes: { 'otp-pending': { ttl: '10m' } } })
  t.teardown(async () => { await app.close() })
  const x = xems.forApp(app)
  t.equal(x, app.xems, 'xems.forApp(app) is app.xems')
  const pending = await x.createSession('otp-pending', { user: 'ada' }, { userId: 'u1' })
  t.equal(await x.resolveSession(pending), null, 'the default sandbox is auth-active')
  const resolved = await x.resolveSession(pending, { sandbox: 'otp-pending' })
  t.same(
    { ...resolved, createdAt: 0, lastSeenAt: 0, expiresAt: 0, id: '' },
    { id: '', sandbox: 'otp-pending', data: { user: 'ada' }, userId: 'u1', createdAt: 0, lastSeenAt: 0, expiresAt: 0, token: pending, binding: null }
  )
  t.equal(resolved!.expiresAt, clock.now + 10 * 60_000)

  const rotated = await x.resolveSession(pending, { sandbox: 'otp-pending', rotate: true, gracePeriod: '1s' })
  t.not(rotated!.token, pending, 'rotate: true issues a new token')
  t.equal((await x.resolveSession(pending, { sandbox: 'otp-pending' }))!.token, rotated!.token, 'until the new token is used, the old one yields it')
  clock.advance(60_000)
  t.equal((await x.resolveSession(pending, { sandbox: 'otp-pending' }))!.token, rotated!.token, 'a minute later too (its successor was never presented)')
  t.ok(await x.resolveSession(rotated!.token, { sandbox: 'otp-pending', gracePeriod: '1s' }), 'the successor presented, with a 1 s grace for the old one')
  clock.advance(1001)
  t.equal(await x.resolveSession(pending, { sandbox: 'otp-pending' }), null, 'after the given grace: refused')
  t.equal(await x.resolveSession(rotated!.token, { sandbox: 'otp-pending' }), null, 'and the session was revoked (theft signal)')

  const pending2 = await x.createSession('otp-pending', { user: 'ada', step: 'totp' }, { userId: 'u1' })
  const active = await x.migrate(pending2, { from: 'otp-pending', to: 'auth-active', data: { user: 'ada', mfa: true } })
  t.ok(active)
  t.equal(await x.resolveSession(pending2, { sandbox: 'otp-pending' }), null, 'the pending token is dead at once')
  t.equal(await x.migrate(pending2, { from: 'otp-pending', to: 'auth-active' }), null, 'and cannot migrate twice')
  const activeSession = await x.resolveSession(active)
  t.same(activeSession!.data, { user: 'ada', mfa: true })
  t.equal(activeSession!.expiresAt, clock.now + 3_600_000, 'the active sandbox ttl applies')

  const other = await x.createSession('auth-active', {}, { userId: 'u1' })
  t.equal((await x.listUserSessions('u1')).length, 2)
  t.equal(await x.revokeUser('u1', { except: activeSession!.id }), 1)
  t.equal(await x.resolveSession(other), null)
  t.ok(await x.resolveSession(active))
  t.equal(await x.destroySession(active), true)
  t.equal(await x.destroySession(active), false)
  t.equal(await x.destroySession('junk'), false)
  t.same(await x.listUserSessions('u1'), [])
  await t.rejects(x.createSession('auth-active', { n: 1 }, { userId: '' }), { code: 'FST_XEMS_BAD_VALUE' })
  await t.rejects(x.createSession('auth-active', [] as never), { code: 'FST_XEMS_BAD_VALUE' })
})

t.test('xems.forApp fails clearly without the plugin', async (t) => {
  const app = Fastify()
  t.throws(() => xems.forApp(app), { code: 'FST_XEMS_MISSING_SESSION_PLUGIN', message: /register xemsSession/ })
  await app.close()
})

t.test('app.xems is the documented API, not the engine; engineOf reaches the engine', async (t) => {
  const { app } = await buildApp({ sandbox: 'app:main', gracePeriod: '2s', unseenWindow: '5m', onReuse: 'reject', maxAge: '1d' })
  t.teardown(async () => { await app.close() })
  const api = app.xems as unknown as Record<string, unknown>
  for (const hidden of ['store', 'open', 'commit', 'issue', 'migrateById', 'destroyById', 'security', 'signedIn', 'close', 'now', 'emit']) {
    t.equal(api[hidden], undefined, `app.xems.${hidden} is not there`)
  }
  t.same(Object.keys(app.xems), ['requireSession'], 'no own state but the guard (the engine is private)')
  t.same({ defaultSandbox: app.xems.defaultSandbox, gracePeriod: app.xems.gracePeriod, unseenWindow: app.xems.unseenWindow, onReuse: app.xems.onReuse, maxAge: app.xems.maxAge },
    { defaultSandbox: 'app:main', gracePeriod: 2000, unseenWindow: 300_000, onReuse: 'reject', maxAge: 86_400_000 }, 'the settings, read-only')
  t.throws(() => { (app.xems as { gracePeriod: number }).gracePeriod = 0 }, TypeError)
  const engine = engineOf(app)
  t.ok(engine instanceof XemsEngine)
  t.equal(engine.store.constructor, MemoryStore, 'the engine holds the store')
  t.equal(engineOf(app), engine, 'always the same engine')
  const parent = Fastify()
  t.teardown(async () => { await parent.close() })
  await parent.register(xemsSession)
  let child: FastifyInstance | undefined
  await parent.register(async (instance) => { child = instance })
  await parent.ready()
  t.not(child, parent)
  t.equal(engineOf(child!), engineOf(parent), 'an encapsulated child reaches its parent\'s engine')
  t.equal(xems.forApp(child!), parent.xems)

  const created: string[] = []
  const listener = (event: { id: string }): void => { created.push(event.id) }
  t.equal(app.xems.on('created', listener), app.xems, 'on chains')
  const once: string[] = []
  app.xems.once('created', (event) => { once.push(event.id) })
  await app.xems.createSession('app:main')
  await app.xems.createSession('app:main')
  t.equal(created.length, 2, 'on: every event')
  t.equal(once.length, 1, 'once: the first only')
  t.equal(app.xems.off('created', listener), app.xems)
  await app.xems.createSession('app:main')
  t.equal(created.length, 2, 'off: no more')
  t.equal(engine.listenerCount('created'), 1, 'the plugin\'s own log listener stays')
})

t.test('engineOf fails clearly without the plugin', async (t) => {
  const app = Fastify()
  t.throws(() => engineOf(app), { code: 'FST_XEMS_MISSING_SESSION_PLUGIN' })
  app.decorate('xems', { not: 'the api' } as never)
  t.throws(() => engineOf(app), { code: 'FST_XEMS_MISSING_SESSION_PLUGIN' }, 'a foreign xems decorator is not an engine')
  await app.close()
})

t.test('the store only ever sees SHA-256 of tokens', async (t) => {
  const inner = new MemoryStore()
  const seen: string[] = []
  const spy: SessionStore = new Proxy(inner, {
    get (target, property, receiver) {
      const value = Reflect.get(target, property, receiver)
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        seen.push(JSON.stringify(args))
        return value.apply(target, args)
      }
    }
  })
  const { app } = await buildApp({ store: spy })
  t.teardown(async () => { await app.close(); await inner.close() })
  const first = await app.inject({ method: 'POST', url: '/login' })
  const token = setCookieToken(first)!
  const second = setCookieToken(await app.inject({ url: '/me', cookies: { xems: token } }))!
  await app.inject({ url: '/me', cookies: { xems: token } })
  const all = seen.join('\n')
  t.ok(all.includes(secretKeyOf(token)), 'the store saw the key of the token')
  t.notOk(all.includes(token.split('.')[0]!), 'never the locator either: the store files the session under a hash of it')
  t.notOk(all.includes(token), 'never the token')
  t.notOk(all.includes(second), 'not even the rotated-to token (a grace box gives it only with the old token)')
})

t.test('a failing store answers 503, never 500, and never logs the user out', async (t) => {
  const inner = new MemoryStore()
  let down = false
  const flaky: SessionStore = new Proxy(inner, {
    get (target, property, receiver) {
      const value = Reflect.get(target, property, receiver)
      if (typeof value !== 'function' || property === 'close') return value
      return async (...args: unknown[]) => {
        if (down) throw new Error('ECONNREFUSED 127.0.0.1:6379')
        return await value.apply(target, args)
      }
    }
  })
  const { app, logs } = await buildApp({ store: flaky, createLimit: { max: 100, window: '1m' } })
  t.teardown(async () => { await app.close(); await inner.close() })
  const token = setCookieToken(await app.inject({ method: 'POST', url: '/login' }))!
  down = true
  const during = await app.inject({ url: '/me', cookies: { xems: token } })
  t.equal(during.statusCode, 503)
  t.equal(during.json().code, 'FST_XEMS_STORE_UNAVAILABLE')
  t.notMatch(during.body, /ECONNREFUSED/, 'internals are not shown to the client')
  t.equal(during.headers['set-cookie'], undefined, 'the cookie is left alone')
  const loginDuring = await app.inject({ method: 'POST', url: '/login' })
  t.equal(loginDuring.statusCode, 503)
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ url: '/me', cookies: { xems: token } })).statusCode, 503)
  t.equal(during.headers['retry-after'], '1')
  const outageLines = (): unknown[] => logs.map((line) => JSON.parse(line) as { xems?: string, level: number }).filter((entry) => entry.xems === 'store-unavailable')
  t.equal(outageLines().length, 1, 'the outage is logged once for the whole burst')
  t.equal(
    logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50 && !line.includes('store-unavailable')).length, 1,
    'no error line per request (only the failed login, which threw)'
  )
  t.notOk(logs.join('').includes(token), 'no token in the logs')
  down = false
  const after = await app.inject({ url: '/me', cookies: { xems: token } })
  t.equal(after.statusCode, 200, 'the session survived the outage')
  t.equal(after.json().data.user, 'ada')
  t.ok(logs.some((line) => line.includes('store-recovered') && line.includes('"failures":6')), 'the recovery is logged once, with the count of failed requests')
})

t.test('a session cannot be migrated twice in parallel through request.session', async (t) => {
  const app = Fastify()
  await app.register(xemsSession, { cookie: { secure: false } })
  t.teardown(async () => { await app.close() })
  app.post('/pending', async (request, reply) => { await reply.xLink({ step: 1 }, 'otp-pending'); return {} })
  app.post('/promote', { preHandler: app.xems.requireSession('otp-pending') }, async (request) => {
    await request.session!.migrate('auth-active', { data: { user: 'ada' } })
    return { sandbox: request.session!.sandbox }
  })
  app.get('/me', { preHandler: app.xems.requireSession() }, async (request) => request.session!.data)
  const pending = setCookieToken(await app.inject({ method: 'POST', url: '/pending' }))!
  const results = await Promise.all(Array.from({ length: 20 }, async () => await app.inject({ method: 'POST', url: '/promote', cookies: { xems: pending } })))
  const ok = results.filter((r) => r.statusCode === 200)
  t.equal(ok.length, 1, 'exactly one promotion')
  const losers = results.filter((r) => r.statusCode !== 200)
  t.same(losers.map((r) => r.statusCode), Array(19).fill(401))
  t.ok(losers.every((r) => r.headers['set-cookie'] === undefined), 'the losers leave the cookie alone: clearing it could undo the winner')
  const active = setCookieToken(ok[0]!)!
  t.same((await app.inject({ url: '/me', cookies: { xems: active } })).json(), { user: 'ada' })
  t.equal((await app.inject({ url: '/me', cookies: { xems: pending } })).statusCode, 401)
  t.equal(generateToken().length, 43)
})

t.test('resolveSession with rotate: a concurrent migration between its resolve and its commit answers null', async (t) => {
  const inner = new MemoryStore()
  t.teardown(async () => { await inner.close() })
  let beforeCommit: (() => Promise<void>) | null = null
  const store: SessionStore = new Proxy(inner, {
    get (target, property, receiver) {
      const value = Reflect.get(target, property, receiver)
      if (property === 'commit') {
        return async (...args: unknown[]) => {
          const hook = beforeCommit
          beforeCommit = null
          if (hook !== null) await hook()
          return await value.apply(target, args)
        }
      }
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
  const engine = new XemsEngine({ store })
  const token = await engine.createSession('auth-active', { user: 'ada' })
  let moved: string | null = null
  beforeCommit = async () => { moved = await engine.migrate(token, { from: 'auth-active', to: 'auth-active' }) }
  t.equal(await engine.resolveSession(token, { rotate: true }), null, 'the rotation lost to the migration: no token to hand out')
  t.type(moved, 'string', 'the migration happened in between')
  const after = await engine.resolveSession(moved)
  t.same(after?.data, { user: 'ada' }, 'the migrated session is intact under its new token')
  t.equal(await engine.resolveSession(token), null, 'the old token opens nothing')
})
