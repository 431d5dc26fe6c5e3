/**
 * Review of a6f7107 (a logout that loses to a concurrent migration answers 401 FST_XEMS_NO_SESSION and
 * leaves the cookie alone; store.destroy answers 'retired'; xLink goes on with a session of its own).
 *
 * Findings (each failed on a6f7107; fixed, kept as regression tests: F1 by a resolve answer of its own
 * for a retired token, `retired`, on which xUnlink answers 401; F2 by the handle leaving the cookie alone
 * when the store call fails; F3 by PresentedCheck.now, the request's clock, in every store's destroy):
 * - F1: the same race one step later: the logout reaches the server just after the regenerate (or
 *   pending → active) committed, before the browser stored the regenerate's Set-Cookie. Its token is
 *   retired, resolves as "no session", and xUnlink answers 200 and clears the cookie while the session
 *   lives on: exactly the outcome the commit says a logout never has ("never claims it signed out").
 * - F2: a logout (or xLink) whose store.destroy fails (outage) answers 503 but clears the cookie: the
 *   handle is marked destroyed before the store call, so onSend applies 'clear'. The session lives on in
 *   the store and the user no longer holds a token to sign it out with. (Older than a6f7107, same class.)
 * - F3: store divergence: a logout admitted before the session's absolute deadline, which lost to a
 *   migration and reaches the store after that deadline: MemoryStore and RedisStore answer false (no
 *   session: the response clears the cookie, 200), PostgresStore answers 'retired' (401, cookie kept): it
 *   does not check the row's deadline in destroy.
 *
 * Checks that hold (passing): the in-flight lost logout on all three stores (401, cookie kept, then a
 * logout with the new token ends it); the lost xLink; store.destroy's three answers agree across stores;
 * the engine API's destroySession; the MFA pending → active race against a logout.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { MemoryStore, type SessionStore, xemsSession } from '../../index.js'
import { contextOf, newKey } from '../../lib/store/conformance/context.js'
import { gate, type Gate, type MakeStore, onEveryStore } from '../each-store.js'
import { clearsSessionCookie, issuedToken } from '../helpers.js'

async function buildApp (store: SessionStore): Promise<{ app: FastifyInstance, next: () => Gate }> {
  const app = Fastify()
  await app.register(xemsSession, { store, cookie: { secure: false }, sandboxes: { 'otp-pending': {} } })
  let current = gate()
  const next = (): Gate => { current = gate(); return current.gate }
  app.post<{ Body: { sandbox?: string } | undefined }>('/login', async (request, reply) => {
    const data: Record<string, unknown> = { user: 'u' }
    await reply.xLink(data, request.body?.sandbox ?? 'auth-active')
    return { ok: true }
  })
  app.post('/signin', async (request) => {
    request.session!.data.signedIn = true
    await request.session!.regenerate()
    return { ok: true }
  })
  app.post('/mfa', async (request) => {
    await request.session!.migrate('auth-active', { userId: 'u-id' })
    request.session!.data.signedIn = true
    return { ok: true }
  })
  app.post('/logout', async (_request, reply) => {
    await reply.xUnlink()
    return { ok: true }
  })
  app.post('/slow-logout', async (_request, reply) => {
    await current.wait()
    await reply.xUnlink()
    return { ok: true }
  })
  app.post('/slow-link', async (_request, reply) => {
    await current.wait()
    const data: Record<string, unknown> = { user: 'other' }
    await reply.xLink(data)
    return { ok: true }
  })
  app.post<{ Body: { token: string } }>('/api-destroy', async (request) => ({ ended: await app.xems.destroySession(request.body.token) }))
  app.get('/me', async (request) => ({ data: request.session?.data ?? null, sandbox: request.session?.sandbox ?? null }))
  return { app, next }
}

async function cases (t: Test, makeStore: MakeStore): Promise<void> {
  for (const [name, sandbox, migrateUrl] of [['regenerate()', 'auth-active', '/signin'], ['pending → active (migrate)', 'otp-pending', '/mfa']] as const) {
    t.test(`F1: a logout arriving just after a concurrent ${name} committed (its Set-Cookie not yet stored) does not claim it signed out`, async (t) => {
      const { app } = await buildApp(await makeStore(t))
      t.teardown(async () => { await app.close() })
      const token = issuedToken(await app.inject({ method: 'POST', url: '/login', body: { sandbox } }))
      // Tab 1's request migrates the session; its response (the new token) is still on its way to the browser.
      const fresh = issuedToken(await app.inject({ method: 'POST', url: migrateUrl, cookies: { xems: token } }))
      // Tab 2's logout, sent with the cookie the browser still holds.
      const logout = await app.inject({ method: 'POST', url: '/logout', cookies: { xems: token } })
      const me = await app.inject({ url: '/me', cookies: { xems: fresh } })
      t.same(me.json().data, { user: 'u', signedIn: true }, 'the migrated session lives on (nothing ended it)')
      // …and the browser is about to store `fresh` (the migration's Set-Cookie arrives last): signed in.
      t.equal(logout.statusCode, 401, 'so the logout must not answer 200 ("signed out")')
      t.notOk(clearsSessionCookie(logout), 'nor clear the cookie as if it had signed out')
    })

    t.test(`held: a logout in flight across a concurrent ${name}: 401, cookie kept; the new token signs out`, async (t) => {
      const { app, next } = await buildApp(await makeStore(t))
      t.teardown(async () => { await app.close() })
      const token = issuedToken(await app.inject({ method: 'POST', url: '/login', body: { sandbox } }))
      const g = next()
      const slow = app.inject({ method: 'POST', url: '/slow-logout', cookies: { xems: token } })
      await g.entered
      const fresh = issuedToken(await app.inject({ method: 'POST', url: migrateUrl, cookies: { xems: token } }))
      g.release()
      const lost = await slow
      t.equal(lost.statusCode, 401)
      t.equal(lost.json().code, 'FST_XEMS_NO_SESSION')
      t.equal(lost.headers['set-cookie'], undefined)
      const again = await app.inject({ method: 'POST', url: '/logout', cookies: { xems: fresh } })
      t.equal(again.statusCode, 200)
      t.ok(clearsSessionCookie(again))
      t.same((await app.inject({ url: '/me', cookies: { xems: fresh } })).json(), { data: null, sandbox: null })
    })

    t.test(`held: a sign-in (xLink) in flight across a concurrent ${name} gets a usable session of its own`, async (t) => {
      const { app, next } = await buildApp(await makeStore(t))
      t.teardown(async () => { await app.close() })
      const token = issuedToken(await app.inject({ method: 'POST', url: '/login', body: { sandbox } }))
      const g = next()
      const slow = app.inject({ method: 'POST', url: '/slow-link', cookies: { xems: token } })
      await g.entered
      const fresh = issuedToken(await app.inject({ method: 'POST', url: migrateUrl, cookies: { xems: token } }))
      g.release()
      const own = issuedToken(await slow)
      t.same((await app.inject({ url: '/me', cookies: { xems: own } })).json().data, { user: 'other' })
      t.same((await app.inject({ url: '/me', cookies: { xems: fresh } })).json().data, { user: 'u', signedIn: true })
      // Both remain signable-out.
      t.equal((await app.inject({ method: 'POST', url: '/logout', cookies: { xems: own } })).statusCode, 200)
      t.equal((await app.inject({ method: 'POST', url: '/logout', cookies: { xems: fresh } })).statusCode, 200)
      t.same((await app.inject({ url: '/me', cookies: { xems: fresh } })).json().data, null)
    })
  }

  t.test('held: the engine API destroySession ends nothing with a retired token (false), ends with the current one', async (t) => {
    const { app } = await buildApp(await makeStore(t))
    t.teardown(async () => { await app.close() })
    const token = issuedToken(await app.inject({ method: 'POST', url: '/login' }))
    const fresh = issuedToken(await app.inject({ method: 'POST', url: '/signin', cookies: { xems: token } }))
    const old = await app.inject({ method: 'POST', url: '/api-destroy', body: { token } })
    t.equal(old.statusCode, 200)
    t.same(old.json(), { ended: false })
    t.same((await app.inject({ method: 'POST', url: '/api-destroy', body: { token: fresh } })).json(), { ended: true })
    t.same((await app.inject({ method: 'POST', url: '/api-destroy', body: { token: fresh } })).json(), { ended: false })
  })

  t.test('held: store.destroy with a presented token answers alike on every store (true / false / retired)', async (t) => {
    const store = await makeStore(t)
    const t0 = Date.now()
    const { create, rotateFrom, migrate } = contextOf(store, t0)
    // A rotated token the record keeps may end the session.
    const a = await create()
    await rotateFrom(a.id, a.key, t0 + 1)
    t.equal(await store.destroy(a.id, { tokenKey: a.key, migrations: 0 }), true, 'rotated, kept: ends it')
    t.equal(await store.destroy(a.id, { tokenKey: a.key, migrations: 0 }), false, 'then: nothing to end')
    // Rotated, then migrated: both earlier tokens are retired.
    const b = await create()
    const b2 = await rotateFrom(b.id, b.key, t0 + 1)
    t.equal(await migrate(b.id, b2, { from: 'auth-active', to: 'auth-active', now: t0 + 2 }), true)
    t.equal(await store.destroy(b.id, { tokenKey: b.key, migrations: 0 }), 'retired', 'a rotated token a migration retired')
    t.equal(await store.destroy(b.id, { tokenKey: b2, migrations: 0 }), 'retired', 'the token the migration replaced')
    t.equal(await store.destroy(b.id, { tokenKey: newKey(), migrations: 1 }), true,
      'a key the record does not hold, with the current migration count (a pruned token, no migration since): ends it')
    // No presented token (the engine never does this for a request): ends whatever it is.
    const c = await create()
    t.equal(await store.destroy(c.id), true)
    t.equal(await store.destroy(c.id), false)
    t.equal(await store.destroy('nope', { tokenKey: newKey(), migrations: 0 }), false, 'unknown id: false, not retired')
  })

  t.test('F3: a lost logout whose session reached its absolute deadline meanwhile answers alike on every store (no session: false)', async (t) => {
    const store = await makeStore(t)
    const t0 = Date.now()
    const { create, migrate } = contextOf(store, t0)
    const s = await create({ absolute: 300 })
    t.equal(await migrate(s.id, s.key, { from: 'auth-active', to: 'auth-active', now: t0 + 1 }), true)
    await new Promise((resolve) => setTimeout(resolve, 700))
    // The request was admitted before the deadline; its logout runs after it. There is no session any more.
    // As the engine calls it: with the request's clock (PresentedCheck.now).
    t.equal(await store.destroy(s.id, { tokenKey: s.key, migrations: 0, now: Date.now() }), false, 'an ended (expired) session is "none", not "retired"')
  })
}

// F2: a store that fails its destroy (an outage: a timeout, a reset connection).
class FlakyDestroyStore extends MemoryStore {
  failDestroy = false
  override async destroy (...args: Parameters<MemoryStore['destroy']>): ReturnType<MemoryStore['destroy']> {
    if (this.failDestroy) throw new Error('ECONNRESET')
    return await super.destroy(...args)
  }
}

for (const url of ['/logout', '/slow-link'] as const) {
  t.test(`F2: ${url} whose store.destroy fails answers 503 and leaves the cookie (the session lives on)`, async (t) => {
    const store = new FlakyDestroyStore()
    const { app, next } = await buildApp(store)
    t.teardown(async () => { await app.close(); await store.close() })
    const token = issuedToken(await app.inject({ method: 'POST', url: '/login' }))
    store.failDestroy = true
    const g = next()
    const pending = app.inject({ method: 'POST', url, cookies: { xems: token } })
    g.release()
    const res = await pending
    store.failDestroy = false
    t.equal(res.statusCode, 503, 'the outage is a 503')
    const me = await app.inject({ url: '/me', cookies: { xems: token } })
    t.same(me.json().data, { user: 'u' }, 'the session was not ended')
    t.notOk(clearsSessionCookie(res), 'so the response must not clear the cookie: the user could never sign this session out')
  })
}

await onEveryStore(t, cases)
