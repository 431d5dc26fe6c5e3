/**
 * A request that loses to a concurrent migration writes nothing into the migrated session (session
 * fixation): request R1 resolves with token T and runs slowly; meanwhile R2, with the same T, signs in
 * (regenerate, or pending → active); R1's changes at its end must not reach the signed-in session. R1 is
 * answered 401 FST_XEMS_NO_SESSION without any Set-Cookie (the client already holds R2's token: clearing
 * it would sign it out). A slow request with nothing to save keeps its answer. A logout that loses the race
 * ends nothing and says so (401, the cookie kept); a sign-in that loses it opens its own session. On all three stores.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { MemoryStore, type SessionStore, xemsSession } from '../../../index.js'
import { gate, type Gate, type MakeStore, onEveryStore } from '../../each-store.js'
import { issuedToken } from '../../helpers.js'

async function buildApp (store: SessionStore, clock?: () => number): Promise<{ app: FastifyInstance, next: () => Gate }> {
  const app = Fastify()
  await app.register(xemsSession, {
    store, cookie: { secure: false }, sandboxes: { 'otp-pending': {} }, ...(clock === undefined ? {} : { clock })
  })
  let current = gate()
  const next = (): Gate => { current = gate(); return current.gate }
  app.post<{ Body: { sandbox?: string } | undefined }>('/login', async (request, reply) => {
    const data: Record<string, unknown> = { user: 'victim' }
    await reply.xLink(data, request.body?.sandbox ?? 'auth-active')
    return { ok: true }
  })
  // The attacker's slow request: writes attacker-chosen data, at its end.
  app.post('/slow-write', async (request) => {
    const session = request.session!
    await current.wait()
    session.data.x = 'attacker'
    return { ok: true }
  })
  app.get('/slow-read', async (request) => {
    const session = request.session!
    await current.wait()
    return { data: session.data }
  })
  // The victim signs in on the planted token.
  app.post('/signin', async (request) => {
    const session = request.session!
    session.data.signedIn = true
    await session.regenerate()
    return { ok: true }
  })
  app.post('/mfa', async (request) => {
    const session = request.session!
    await session.migrate('auth-active', { userId: 'victim-id' })
    session.data.signedIn = true
    return { ok: true }
  })
  app.post('/slow-logout', async (_request, reply) => {
    await current.wait()
    await reply.xUnlink()
    return { ok: true }
  })
  app.post('/logout', async (_request, reply) => {
    await reply.xUnlink()
    return { ok: true }
  })
  app.post('/slow-link', async (_request, reply) => {
    await current.wait()
    const data: Record<string, unknown> = { user: 'another' }
    await reply.xLink(data)
    return { ok: true }
  })
  app.get('/me', async (request) => ({ data: request.session?.data ?? null, sandbox: request.session?.sandbox ?? null }))
  return { app, next }
}

async function cases (t: Test, makeStore: MakeStore): Promise<void> {
  for (const [name, login, signin, expected] of [
    ['regenerate()', 'auth-active', '/signin', { data: { user: 'victim', signedIn: true }, sandbox: 'auth-active' }],
    ['pending → active (migrate)', 'otp-pending', '/mfa', { data: { user: 'victim', signedIn: true }, sandbox: 'auth-active' }]
  ] as const) {
    t.test(`a slow request whose token a concurrent ${name} retired writes nothing: 401, no Set-Cookie`, async (t) => {
      const { app, next } = await buildApp(await makeStore(t))
      t.teardown(async () => { await app.close() })
      const planted = issuedToken(await app.inject({ method: 'POST', url: '/login', payload: { sandbox: login } }))
      const slowGate = next()
      const slow = app.inject({ method: 'POST', url: '/slow-write', cookies: { xems: planted } })
      await slowGate.entered
      const signedIn = await app.inject({ method: 'POST', url: signin, cookies: { xems: planted } })
      t.equal(signedIn.statusCode, 200, 'the victim signs in')
      const fresh = issuedToken(signedIn)
      slowGate.release()
      const lost = await slow
      t.equal(lost.statusCode, 401, 'the slow request does not claim success')
      t.equal(lost.json().code, 'FST_XEMS_NO_SESSION', 'with the stable no-session error')
      t.equal(lost.headers['set-cookie'], undefined, 'and no Set-Cookie: the cookie is neither cleared nor replaced')
      const me = await app.inject({ url: '/me', cookies: { xems: fresh } })
      t.equal(me.statusCode, 200)
      t.same(me.json(), expected, 'the signed-in session has none of the attacker\'s data')
      t.same((await app.inject({ url: '/me', cookies: { xems: planted } })).json(), { data: null, sandbox: null },
        'and the planted token opens nothing')
    })
  }

  t.test('a logout that loses to a concurrent regenerate does not claim success: 401, the cookie kept; the user signs out with the new token', async (t) => {
    // The user's own two tabs: one signs out while the other's request regenerates the session. The
    // logout may not end the migrated session (it could be a victim's, signed in on a planted token), so
    // it must not say it did: a 200 that clears the cookie would leave the session signed in for whoever
    // holds the regenerate's token, the browser itself when that Set-Cookie arrives last.
    const { app, next } = await buildApp(await makeStore(t))
    t.teardown(async () => { await app.close() })
    const token = issuedToken(await app.inject({ method: 'POST', url: '/login' }))
    const slowGate = next()
    const logout = app.inject({ method: 'POST', url: '/slow-logout', cookies: { xems: token } })
    await slowGate.entered
    const fresh = issuedToken(await app.inject({ method: 'POST', url: '/signin', cookies: { xems: token } }))
    slowGate.release()
    const lost = await logout
    t.equal(lost.statusCode, 401, 'the logout says it did not happen')
    t.equal(lost.json().code, 'FST_XEMS_NO_SESSION')
    t.equal(lost.headers['set-cookie'], undefined, 'and leaves the cookie alone (no clearing, no token)')
    t.equal(lost.headers['clear-site-data'], undefined)
    t.same((await app.inject({ url: '/me', cookies: { xems: fresh } })).json().data, { user: 'victim', signedIn: true },
      'the regenerated session lives on')
    const again = await app.inject({ method: 'POST', url: '/logout', cookies: { xems: fresh } })
    t.equal(again.statusCode, 200, 'a logout with the token the client now holds succeeds')
    t.match(String(again.headers['set-cookie']), /^xems=;/, 'and clears the cookie')
    t.same((await app.inject({ url: '/me', cookies: { xems: fresh } })).json(), { data: null, sandbox: null }, 'the session is gone')
  })

  t.test('a sign-in (xLink) that loses to a concurrent regenerate opens its own session and leaves the migrated one', async (t) => {
    const { app, next } = await buildApp(await makeStore(t))
    t.teardown(async () => { await app.close() })
    const token = issuedToken(await app.inject({ method: 'POST', url: '/login' }))
    const slowGate = next()
    const link = app.inject({ method: 'POST', url: '/slow-link', cookies: { xems: token } })
    await slowGate.entered
    const fresh = issuedToken(await app.inject({ method: 'POST', url: '/signin', cookies: { xems: token } }))
    slowGate.release()
    const linked = await link
    t.equal(linked.statusCode, 200, 'the sign-in goes on')
    const own = issuedToken(linked)
    t.same((await app.inject({ url: '/me', cookies: { xems: own } })).json().data, { user: 'another' }, 'with a session of its own')
    t.same((await app.inject({ url: '/me', cookies: { xems: fresh } })).json().data, { user: 'victim', signedIn: true },
      'and the migrated session, not its to end, lives on')
  })

  t.test('a slow request with nothing to save keeps its answer across a concurrent regenerate, and sends no token', async (t) => {
    const { app, next } = await buildApp(await makeStore(t))
    t.teardown(async () => { await app.close() })
    const token = issuedToken(await app.inject({ method: 'POST', url: '/login' }))
    const slowGate = next()
    const slow = app.inject({ url: '/slow-read', cookies: { xems: token } })
    await slowGate.entered
    const fresh = issuedToken(await app.inject({ method: 'POST', url: '/signin', cookies: { xems: token } }))
    slowGate.release()
    const read = await slow
    t.equal(read.statusCode, 200, 'the handler\'s answer stands')
    t.same(read.json(), { data: { user: 'victim' } })
    t.equal(read.headers['set-cookie'], undefined, 'no token sent: the client keeps the regeneration\'s')
    t.same((await app.inject({ url: '/me', cookies: { xems: fresh } })).json().data, { user: 'victim', signedIn: true })
  })
}

t.test('a slow write whose rotated token the session pruned while it ran is saved when no migration happened since', async (t) => {
  let now = Date.now()
  const store = new MemoryStore({ clock: () => now })
  const { app, next } = await buildApp(store, () => now)
  t.teardown(async () => { await app.close(); await store.close() })
  const token = issuedToken(await app.inject({ method: 'POST', url: '/login' }))
  // A long upload beside a polling page: the slow request is admitted with the first token…
  const slowGate = next()
  const slow = app.inject({ method: 'POST', url: '/slow-write', cookies: { xems: token } })
  await slowGate.entered
  // …the client goes on: two rotations, the second one presenting the first's token, then past the grace
  // period another one, which prunes the slow request's token from the record.
  const second = issuedToken(await app.inject({ url: '/me', cookies: { xems: token } }))
  const third = issuedToken(await app.inject({ url: '/me', cookies: { xems: second } }))
  now += 10_001
  const fourth = issuedToken(await app.inject({ url: '/me', cookies: { xems: third } }))
  slowGate.release()
  const done = await slow
  t.equal(done.statusCode, 200, 'an honest slow request is not refused')
  t.equal(done.headers['set-cookie'], undefined, 'it learns no token: the client keeps its newest')
  t.same((await app.inject({ url: '/me', cookies: { xems: fourth } })).json().data, { user: 'victim', x: 'attacker' }, 'its write was saved')

  // The same, but the session migrates (signs in) while the slow request runs: refused, nothing written.
  const planted = issuedToken(await app.inject({ method: 'POST', url: '/login' }))
  const gate2 = next()
  const slow2 = app.inject({ method: 'POST', url: '/slow-write', cookies: { xems: planted } })
  await gate2.entered
  const p2 = issuedToken(await app.inject({ url: '/me', cookies: { xems: planted } }))
  const p3 = issuedToken(await app.inject({ url: '/me', cookies: { xems: p2 } }))
  now += 10_001
  const p4 = issuedToken(await app.inject({ url: '/me', cookies: { xems: p3 } }))
  const signedIn = issuedToken(await app.inject({ method: 'POST', url: '/signin', cookies: { xems: p4 } }))
  const p5 = issuedToken(await app.inject({ url: '/me', cookies: { xems: signedIn } }))
  now += 10_001
  const p6 = issuedToken(await app.inject({ url: '/me', cookies: { xems: p5 } }))
  gate2.release()
  const lost = await slow2
  t.equal(lost.statusCode, 401, 'the session migrated since the slow request was admitted: its write is refused')
  t.equal(lost.json().code, 'FST_XEMS_NO_SESSION')
  t.equal(lost.headers['set-cookie'], undefined, 'and the client keeps its newest token')
  t.same((await app.inject({ url: '/me', cookies: { xems: p6 } })).json().data, { user: 'victim', signedIn: true }, 'nothing was written')
})

t.test('a slow write admitted right after a migration, whose token is pruned while it runs, is saved: no migration came after it', async (t) => {
  let now = Date.now()
  const store = new MemoryStore({ clock: () => now })
  const { app, next } = await buildApp(store, () => now)
  t.teardown(async () => { await app.close(); await store.close() })
  const planted = issuedToken(await app.inject({ method: 'POST', url: '/login' }))
  const signedIn = issuedToken(await app.inject({ method: 'POST', url: '/signin', cookies: { xems: planted } }))
  // One second after the sign-in: the request counts the sign-in's migration, and no other follows.
  now += 1000
  const gate = next()
  const slow = app.inject({ method: 'POST', url: '/slow-write', cookies: { xems: signedIn } })
  await gate.entered
  const a = issuedToken(await app.inject({ url: '/me', cookies: { xems: signedIn } }))
  const b = issuedToken(await app.inject({ url: '/me', cookies: { xems: a } }))
  now += 10_001
  const c = issuedToken(await app.inject({ url: '/me', cookies: { xems: b } }))
  gate.release()
  const done = await slow
  t.equal(done.statusCode, 200, 'an honest slow request after the sign-in is not refused')
  t.equal(done.headers['set-cookie'], undefined, 'it learns no token: the client keeps its newest')
  t.same((await app.inject({ url: '/me', cookies: { xems: c } })).json().data, { user: 'victim', signedIn: true, x: 'attacker' }, 'its write was saved')
})

await onEveryStore(t, cases)
