/**
 * Review s25b of 4e41e0d (resolve answers 'retired'; destroy answers true / false / 'retired'; lazy
 * request.session.data).
 *
 * Finding (failed on 4e41e0d; fixed: `data` is an own enumerable accessor of each session, one shared
 * descriptor; kept as a regression test):
 * - L1: `request.session.data` became a prototype accessor (lazy decode): `JSON.stringify(request.session)`,
 *   `{ ...request.session }`, `Object.keys` / `Object.assign` / `structuredClone`-like copies no longer carry
 *   the session data (before 86fe825 it was an own enumerable property). A handler that answers
 *   `reply.send(request.session)` or logs/spreads it silently loses the data (and a handler that rebuilds
 *   the session from a spread writes nothing of it).
 *
 * Checks that hold (passing): a header client (x-xems-token) with a retired token: xUnlink 401, no
 * token header, the session lives; past unseenWindow (the new token presented) a retired token
 * is the theft signal (FST_XEMS_TOKEN_REUSED), no longer 'retired'; the engine API (resolveSession, migrate, destroySession) on a retired token answers null / false
 * and ends nothing; data read only after regenerate() or after migrate(to, { data }), and data assigned
 * before migrate(to, { data }), behave as with eager decoding; a request that never reads data does not
 * undo a concurrent write.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import t from 'tap'
import { MemoryStore, xemsSession } from '../../index.js'
import { clearsSessionCookie, issuedToken } from '../helpers.js'

async function buildApp (now: () => number = Date.now): Promise<{ app: FastifyInstance, store: MemoryStore }> {
  const store = new MemoryStore()
  const app = Fastify()
  await app.register(xemsSession, { store, cookie: { secure: false }, sandboxes: { 'otp-pending': {} }, clock: now })
  app.post('/login', async (_request, reply) => {
    const data: Record<string, unknown> = { user: 'u' }
    await reply.xLink(data)
    return { ok: true }
  })
  app.post('/regen', async (request) => {
    await request.session!.regenerate()
    request.session!.data.after = 1
    return { data: request.session!.data }
  })
  app.post('/move', async (request) => {
    request.session!.data = { assigned: true }
    await request.session!.migrate('auth-active', { data: { given: 1 } })
    return { data: request.session!.data }
  })
  app.post('/write', async (request) => {
    request.session!.data.w = 'x'
    return { ok: true }
  })
  app.post('/logout', async (_request, reply) => {
    await reply.xUnlink()
    return { ok: true }
  })
  app.get('/json', async (request) => JSON.parse(JSON.stringify(request.session)) as unknown)
  app.get('/spread', async (request) => ({ ...request.session }))
  app.get('/me', async (request) => ({ data: request.session?.data ?? null }))
  app.post<{ Body: { token: string } }>('/api', async (request) => ({
    resolved: await app.xems.resolveSession(request.body.token),
    migrated: await app.xems.migrate(request.body.token, { from: 'auth-active', to: 'auth-active' }),
    destroyed: await app.xems.destroySession(request.body.token)
  }))
  t.teardown(async () => { await app.close(); await store.close() })
  return { app, store }
}

t.test('L1: JSON and spreads of request.session still carry its data (lazy data must stay an enumerable property)', async (t) => {
  const { app } = await buildApp()
  const token = issuedToken(await app.inject({ method: 'POST', url: '/login' }))
  const json = (await app.inject({ url: '/json', cookies: { xems: token } })).json()
  t.same(json.data, { user: 'u' }, 'JSON.stringify(request.session) includes data')
  const spread = (await app.inject({ url: '/spread', cookies: { xems: token } })).json()
  t.same(spread.data, { user: 'u' }, '{ ...request.session } includes data')
})

t.test('held: a header client with a retired token: xUnlink 401, no token sent, the session lives', async (t) => {
  const { app } = await buildApp()
  const login = await app.inject({ method: 'POST', url: '/login', headers: { 'x-xems-token': '' } })
  const token = String(login.headers['x-xems-token'] ?? '')
  t.ok(token.length > 0, 'a header client gets its token by header')
  const regen = await app.inject({ method: 'POST', url: '/regen', headers: { 'x-xems-token': token } })
  const fresh = String(regen.headers['x-xems-token'] ?? '')
  t.ok(fresh.length > 0 && fresh !== token)
  const logout = await app.inject({ method: 'POST', url: '/logout', headers: { 'x-xems-token': token } })
  t.equal(logout.statusCode, 401)
  t.equal(logout.headers['x-xems-token'], undefined)
  t.notOk(clearsSessionCookie(logout))
  t.same((await app.inject({ url: '/me', headers: { 'x-xems-token': fresh } })).json().data, { user: 'u', after: 1 })
})

t.test('held: past unseenWindow a retired token is no longer retired: its logout is the theft signal (new token presented)', async (t) => {
  let offset = 0
  const { app } = await buildApp(() => Date.now() + offset)
  const token = issuedToken(await app.inject({ method: 'POST', url: '/login' }))
  const fresh = issuedToken(await app.inject({ method: 'POST', url: '/regen', cookies: { xems: token } }))
  t.equal((await app.inject({ method: 'POST', url: '/logout', cookies: { xems: token } })).statusCode, 401, 'within the window: 401')
  t.equal((await app.inject({ url: '/me', cookies: { xems: fresh } })).statusCode, 200, 'the new token presented')
  offset = 11 * 60_000
  const late = await app.inject({ method: 'POST', url: '/logout', cookies: { xems: token } })
  t.equal(late.statusCode, 401, 'past the window, the new token presented: the theft signal, not "retired"')
  t.equal(late.json().code, 'FST_XEMS_TOKEN_REUSED')
})

t.test('held: the engine API on a retired token answers null / false and ends nothing', async (t) => {
  const { app } = await buildApp()
  const token = issuedToken(await app.inject({ method: 'POST', url: '/login' }))
  const fresh = issuedToken(await app.inject({ method: 'POST', url: '/regen', cookies: { xems: token } }))
  const api = await app.inject({ method: 'POST', url: '/api', body: { token } })
  t.equal(api.statusCode, 200)
  t.same(api.json(), { resolved: null, migrated: null, destroyed: false })
  t.same((await app.inject({ url: '/me', cookies: { xems: fresh } })).json().data, { user: 'u', after: 1 })
})

t.test('held: lazy data across regenerate() and migrate(to, { data }); an unread request keeps a concurrent write', async (t) => {
  const { app } = await buildApp()
  const token = issuedToken(await app.inject({ method: 'POST', url: '/login' }))
  const regen = await app.inject({ method: 'POST', url: '/regen', cookies: { xems: token } })
  t.same(regen.json().data, { user: 'u', after: 1 }, 'read first after regenerate(): the kept data')
  const fresh = issuedToken(regen)
  const moved = await app.inject({ method: 'POST', url: '/move', cookies: { xems: fresh } })
  t.same(moved.json().data, { given: 1 }, 'migrate(to, { data }) replaces what the handler assigned')
  const moved2 = issuedToken(moved)
  t.same((await app.inject({ url: '/me', cookies: { xems: moved2 } })).json().data, { given: 1 })
  await app.inject({ method: 'POST', url: '/write', cookies: { xems: moved2 } })
  const me = await app.inject({ url: '/me', cookies: { xems: moved2 } })
  t.same(me.json().data, { given: 1, w: 'x' })
})
