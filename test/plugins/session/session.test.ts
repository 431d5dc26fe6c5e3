import Fastify from 'fastify'
import t from 'tap'
import { xemsSession, type XemsCookieOptions } from '../../../plugins/session/index.js'
import { buildApp, login, setCookieHeader, setCookieToken } from '../../helpers.js'
import { generateToken } from '../../../lib/crypto/random-token.js'
import { generateLocator, isWellFormedSessionToken as isWellFormedToken, sessionTokenOf } from '../../../lib/session/token.js'

t.test('xLink opens a session: HttpOnly, Secure-by-default cookie, no-store, no token in the body', async (t) => {
  const { app } = await buildApp({ cookie: {} })
  t.teardown(async () => { await app.close() })
  const response = await app.inject({ method: 'POST', url: '/login' })
  t.equal(response.statusCode, 200)
  const token = setCookieToken(response, '__Host-xems')!
  t.ok(isWellFormedToken(token), 'a locator.secret token of 66 base64url characters, named __Host-xems by default when secure')
  const header = setCookieHeader(response)
  t.match(header, /; HttpOnly/)
  t.match(header, /; Secure/, 'secure by default')
  t.match(header, /; SameSite=Lax/)
  t.match(header, /; Path=\//)
  t.notMatch(header, /Max-Age|Expires/, 'a browser-session cookie by default: gone when the browser closes')
  t.ok(Buffer.byteLength(header.split(';')[0]!) <= 4096)
  t.equal(response.headers['cache-control'], 'no-store')
  t.equal(response.headers['x-xems-token'], undefined, 'a browser (cookie) client never gets the token in a header that scripts could read')
  t.notMatch(response.body, token)
})

t.test('cookie.persistent: true sets Max-Age to the time left before the absolute deadline', async (t) => {
  const { app, clock } = await buildApp({ cookie: { secure: false, persistent: true }, maxAge: '2d' })
  t.teardown(async () => { await app.close() })
  const token = await login(app)
  clock.advance(1_800_000)
  const response = await app.inject({ url: '/me', cookies: { xems: token } })
  t.match(setCookieHeader(response), new RegExp(`Max-Age=${2 * 86_400 - 1_800}(;|$)`), 'two days minus the half hour gone')
})

t.test('the session cookie is written exactly as @fastify/cookie writes it, beside the app\'s own cookies', async (t) => {
  const { stringifySetCookie } = await import('cookie')
  const cases: Array<{
    cookie: XemsCookieOptions
    name: string
    attributes: { path: string, secure: boolean, sameSite: 'lax' | 'strict' | 'none', domain?: string, maxAge?: number }
  }> = [
    { cookie: {}, name: '__Host-xems', attributes: { path: '/', secure: true, sameSite: 'lax' } },
    { cookie: { secure: false }, name: 'xems', attributes: { path: '/', secure: false, sameSite: 'lax' } },
    {
      cookie: { domain: 'example.com', path: '/app', sameSite: 'strict' },
      name: '__Secure-xems',
      attributes: { domain: 'example.com', path: '/app', secure: true, sameSite: 'strict' }
    },
    { cookie: { name: 'sid', sameSite: 'none' }, name: 'sid', attributes: { path: '/', secure: true, sameSite: 'none' } },
    { cookie: { secure: false, persistent: true }, name: 'xems', attributes: { path: '/', secure: false, sameSite: 'lax', maxAge: 5 * 86_400 } }
  ]
  for (const { cookie, name, attributes } of cases) {
    const { app } = await buildApp({ cookie })
    app.get('/app-cookie', { preHandler: app.xems.requireSession() }, async (_request, reply) => {
      reply.setCookie('theme', 'dark', { path: '/' })
      return { ok: true }
    })
    const login = await app.inject({ method: 'POST', url: '/login' })
    const token = setCookieToken(login, name)!
    t.equal(login.headers['set-cookie'], stringifySetCookie({ name, value: token, httpOnly: true, ...attributes }), `${JSON.stringify(cookie)}: the same text`)
    const both = await app.inject({ url: '/app-cookie', cookies: { [name]: token } })
    const headers = [both.headers['set-cookie']].flat()
    t.equal(headers.length, 2, 'the app\'s cookie and the rotated session cookie, each its own header')
    t.ok(headers.includes('theme=dark; Path=/; SameSite=Lax'), 'the app\'s cookie goes through @fastify/cookie as before')
    const rotated = setCookieToken(both, name)
    t.ok(rotated !== undefined && rotated !== token, 'the session cookie carries the new token')
    await app.close()
  }
})

t.test('every response to a request that resolved a session carries a new token', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  let token = await login(app)
  const seen = new Set([token])
  for (let i = 0; i < 5; i++) {
    const response = await app.inject({ url: '/me', cookies: { xems: token } })
    t.equal(response.statusCode, 200)
    t.same(response.json().data, { user: 'ada' })
    const next = setCookieToken(response)!
    t.ok(isWellFormedToken(next))
    t.notOk(seen.has(next), 'a token never seen before')
    t.equal(response.headers['cache-control'], 'no-store')
    seen.add(next)
    token = next
  }
})

t.test('an error response still rotates, and the data the handler set before failing is saved', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  const token = await login(app)
  const boom = await app.inject({ url: '/boom', cookies: { xems: token } })
  t.equal(boom.statusCode, 500)
  const next = setCookieToken(boom)!
  t.ok(isWellFormedToken(next))
  t.not(next, token)
  const me = await app.inject({ url: '/me', cookies: { xems: next } })
  t.same(me.json().data, { user: 'ada', beforeBoom: true })
})

t.test('data is read from the store when the request first reads it: untouched data is kept as is, an assigned object is saved', async (t) => {
  const { app } = await buildApp()
  app.post('/replace', async (request) => {
    const replacement = { replaced: true }
    request.session!.data = replacement
    return { same: request.session!.data === replacement }
  })
  app.get('/read-twice', async (request) => {
    const first = request.session!.data
    first.seen = 1
    return { same: request.session!.data === first }
  })
  t.teardown(async () => { await app.close() })
  let token = await login(app, { data: { user: 'ada', cart: [1, 2] } })
  for (let i = 0; i < 3; i++) {
    // /public never reads data: the request rotates and its end writes nothing over the data.
    const untouched = await app.inject({ url: '/public', cookies: { xems: token } })
    t.same(untouched.json(), { sandbox: 'auth-active' })
    token = setCookieToken(untouched)!
  }
  t.same((await app.inject({ url: '/me', cookies: { xems: token } })).json().data, { user: 'ada', cart: [1, 2] }, 'every key kept')
  const twice = await app.inject({ url: '/read-twice', cookies: { xems: token } })
  t.same(twice.json(), { same: true }, 'reads of one request share one object')
  token = setCookieToken(twice)!
  t.same((await app.inject({ url: '/me', cookies: { xems: token } })).json().data, { user: 'ada', cart: [1, 2], seen: 1 }, 'and its change is saved')
  const replaced = await app.inject({ method: 'POST', url: '/replace', cookies: { xems: token } })
  t.same(replaced.json(), { same: true })
  token = setCookieToken(replaced)!
  t.same((await app.inject({ url: '/me', cookies: { xems: token } })).json().data, { replaced: true }, 'an assigned object replaces the data')
})

t.test('autoRotation: false keeps the token and sends no cookie when nothing changed', async (t) => {
  const { app } = await buildApp({ autoRotation: false })
  t.teardown(async () => { await app.close() })
  const token = await login(app)
  const me = await app.inject({ url: '/me', cookies: { xems: token } })
  t.equal(me.statusCode, 200)
  t.equal(me.headers['set-cookie'], undefined)
  const write = await app.inject({ method: 'POST', url: '/me', cookies: { xems: token }, payload: { key: 'a', value: 1 } })
  t.equal(write.statusCode, 200)
  t.equal(setCookieToken(write), undefined, 'saving data does not rotate either')
  t.same((await app.inject({ url: '/me', cookies: { xems: token } })).json().data, { user: 'ada', a: 1 })
})

t.test('grace: a rotated token keeps working for gracePeriod and is answered with the current token', async (t) => {
  const { app, clock } = await buildApp({ gracePeriod: '2s' })
  t.teardown(async () => { await app.close() })
  const first = await login(app)
  const rotated = await app.inject({ url: '/me', cookies: { xems: first } })
  const current = setCookieToken(rotated)!
  clock.advance(1000)
  for (let i = 0; i < 3; i++) {
    const again = await app.inject({ url: '/me', cookies: { xems: first } })
    t.equal(again.statusCode, 200, 'the old token still resolves')
    t.equal(setCookieToken(again), current, 'and gets the same current token each time')
  }
  const write = await app.inject({ method: 'POST', url: '/me', cookies: { xems: first }, payload: { key: 'late', value: true } })
  t.equal(setCookieToken(write), current)
  const viaCurrent = await app.inject({ url: '/me', cookies: { xems: current } })
  t.same(viaCurrent.json().data, { user: 'ada', late: true }, 'a write through the grace token is saved')
  t.not(setCookieToken(viaCurrent), current, 'the current token rotates as usual')
})

t.test('grace follows several rotations to the newest token', async (t) => {
  const { app, clock } = await buildApp()
  t.teardown(async () => { await app.close() })
  const first = await login(app)
  const second = setCookieToken(await app.inject({ url: '/me', cookies: { xems: first } }))!
  const third = setCookieToken(await app.inject({ url: '/me', cookies: { xems: second } }))!
  clock.advance(500)
  t.equal(setCookieToken(await app.inject({ url: '/me', cookies: { xems: first } })), third)
})

t.test('a rotated token keeps working while its successor has not been presented (a lost response), then dies once it has', async (t) => {
  const { app, clock } = await buildApp({ gracePeriod: '2s', unseenWindow: '10m' })
  t.teardown(async () => { await app.close() })
  const first = await login(app)
  const lost = await app.inject({ url: '/me', cookies: { xems: first } })
  const current = setCookieToken(lost)!
  clock.advance(9 * 60_000)
  const retry = await app.inject({ url: '/me', cookies: { xems: first } })
  t.equal(retry.statusCode, 200, 'nine minutes later the client that never got the response is still signed in')
  t.equal(setCookieToken(retry), current, 'and is handed the current token')
  const used = await app.inject({ url: '/me', cookies: { xems: current } })
  t.equal(used.statusCode, 200)
  clock.advance(2001)
  t.equal((await app.inject({ url: '/me', cookies: { xems: first } })).statusCode, 401, 'once the successor was used and the grace is over: the theft signal')
})

t.test('a rotated token whose successor is never presented stops working after the unseen window, and ends the session quietly', async (t) => {
  const { app, clock, logs } = await buildApp({ unseenWindow: '5m', onReuse: 'reject' })
  t.teardown(async () => { await app.close() })
  const first = await login(app)
  const current = setCookieToken(await app.inject({ url: '/me', cookies: { xems: first } }))!
  clock.advance(5 * 60_000 - 1)
  t.equal((await app.inject({ url: '/public', cookies: { xems: first } })).statusCode, 200, 'within the window it still opens the session')
  clock.advance(1)
  const late = await app.inject({ url: '/me', cookies: { xems: first } })
  t.equal(late.statusCode, 401)
  t.equal(late.json().code, 'FST_XEMS_NO_SESSION', 'no session, not the theft signal: a lost response, then silence')
  t.notOk(logs.some((line) => line.includes('"xems":"token-reuse"')), 'nothing logged as a theft')
  // Whoever holds the never-presented successor (a thief who rotated a copied token once, then waited)
  // does not keep the session: the honest client, whose token died, loses nothing by it.
  t.equal((await app.inject({ url: '/me', cookies: { xems: current } })).statusCode, 401, 'the session ended')
})

t.test("reuse after grace: 401, and with onReuse 'revoke' the whole session dies", async (t) => {
  const { app, clock, logs } = await buildApp({ gracePeriod: '2s' })
  t.teardown(async () => { await app.close() })
  const stolen = await login(app, { userId: 'u1' })
  const current = setCookieToken(await app.inject({ url: '/me', cookies: { xems: stolen } }))!
  const next = setCookieToken(await app.inject({ url: '/me', cookies: { xems: current } }))!
  clock.advance(2001)
  const replay = await app.inject({ url: '/public', cookies: { xems: stolen } })
  t.equal(replay.statusCode, 401)
  t.equal(replay.json().code, 'FST_XEMS_TOKEN_REUSED')
  t.equal(setCookieToken(replay), '', 'the cookie is cleared')
  t.equal(replay.headers['cache-control'], 'no-store')
  const victim = await app.inject({ url: '/me', cookies: { xems: next } })
  t.equal(victim.statusCode, 401, 'the current token was revoked with the session')
  const event = logs.map((line) => JSON.parse(line)).find((entry) => entry.xems === 'token-reuse')
  t.ok(event, 'the reuse is logged as an event')
  t.equal(event.revoked, true)
  t.ok(event.reqId, 'logged with the request id, so it can be tied to the client')
  t.equal(event.userId, 'u1')
  t.match(event.id, /^[A-Za-z0-9_-]{22}$/, 'the session is named by its public id')
  t.notMatch(logs.join('\n'), stolen.split('.')[0]!, 'the locator never reaches a log line')
})

t.test("reuse with onReuse 'reject' refuses the replayed token only", async (t) => {
  const { app, clock } = await buildApp({ onReuse: 'reject' })
  t.teardown(async () => { await app.close() })
  const old = await login(app)
  const current = setCookieToken(await app.inject({ url: '/me', cookies: { xems: old } }))!
  const next = setCookieToken(await app.inject({ url: '/me', cookies: { xems: current } }))!
  clock.advance(10_001)
  t.equal((await app.inject({ url: '/me', cookies: { xems: old } })).statusCode, 401)
  t.equal((await app.inject({ url: '/me', cookies: { xems: next } })).statusCode, 200)
})

t.test('junk, oversized, non-canonical and unknown tokens are "no session", never adopted, never a 500', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  const token = await login(app)
  const unknown = sessionTokenOf(generateLocator(), generateToken())
  const [locator, secret] = token.split('.') as [string, string]
  const junk = ['', 'junk', 'A'.repeat(43), generateToken(), token.slice(0, 65) + 'B', locator.slice(0, 21) + 'B.' + secret, token + 'A', `${locator}:${secret}`,
    'x'.repeat(3000), '%00' + token, unknown]
  for (const value of junk) {
    const guarded = await app.inject({ url: '/me', cookies: { xems: value } })
    t.equal(guarded.statusCode, 401, `guarded route refuses ${value.slice(0, 10)}…`)
    t.equal(guarded.json().code, 'FST_XEMS_NO_SESSION')
    const open = await app.inject({ url: '/public', cookies: { xems: value } })
    t.equal(open.statusCode, 200)
    t.same(open.json(), { sandbox: null })
    t.equal(open.headers['set-cookie'], undefined, 'an unknown token is ignored: neither adopted nor cleared (clearing could race with a login)')
  }
  const header = await app.inject({ url: '/me', headers: { 'x-xems-token': 'a'.repeat(10_000) } })
  t.equal(header.statusCode, 401)
  const login2 = await app.inject({ method: 'POST', url: '/login', cookies: { xems: unknown } })
  t.not(setCookieToken(login2), unknown, 'a login never adopts the token the client brought (no fixation)')
})

t.test('header transport for non-browser clients', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  const opened = await app.inject({ method: 'POST', url: '/login', headers: { 'x-xems-token': '' } })
  const token = opened.headers['x-xems-token'] as string
  t.ok(isWellFormedToken(token), 'a client that sends the header (even empty) gets the token by header')
  let current = token
  for (let i = 0; i < 3; i++) {
    const me = await app.inject({ url: '/me', headers: { 'x-xems-token': current } })
    t.equal(me.statusCode, 200)
    const next = me.headers['x-xems-token'] as string
    t.ok(isWellFormedToken(next))
    t.not(next, current)
    current = next
  }
  const cookieOnly = await app.inject({ url: '/me', cookies: { xems: current } })
  t.equal(cookieOnly.statusCode, 200, 'the same session works by cookie too')
  t.equal(cookieOnly.headers['x-xems-token'], undefined)
})

t.test('header only (cookie: false) and a custom header name', async (t) => {
  const { app } = await buildApp({ cookie: false, header: 'X-Session' })
  t.teardown(async () => { await app.close() })
  const opened = await app.inject({ method: 'POST', url: '/login' })
  t.equal(opened.headers['set-cookie'], undefined)
  const token = opened.headers['x-session'] as string
  t.ok(isWellFormedToken(token))
  const me = await app.inject({ url: '/me', headers: { 'x-session': token } })
  t.equal(me.statusCode, 200)
  t.equal((await app.inject({ url: '/me', cookies: { xems: token } })).statusCode, 401, 'cookies are ignored')
})

t.test('cookie only (header: false) ignores the header', async (t) => {
  const { app } = await buildApp({ header: false })
  t.teardown(async () => { await app.close() })
  const token = await login(app)
  t.equal((await app.inject({ url: '/me', headers: { 'x-xems-token': token } })).statusCode, 401)
  t.equal((await app.inject({ url: '/me', cookies: { xems: token } })).statusCode, 200)
})

t.test('sandboxes are isolated: a pending session never passes an active guard', async (t) => {
  const { app } = await buildApp({ sandboxes: { 'otp-pending': { ttl: '10m' } } })
  t.teardown(async () => { await app.close() })
  const pending = await login(app, { sandbox: 'otp-pending', data: { step: 'totp' } })
  const refused = await app.inject({ url: '/me', cookies: { xems: pending } })
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, 'FST_XEMS_NO_SESSION')
  const next = setCookieToken(refused)!
  const allowed = await app.inject({ url: '/pending', cookies: { xems: next } })
  t.equal(allowed.statusCode, 200)
  t.same(allowed.json().data, { step: 'totp' })
  t.equal(await app.xems.resolveSession(setCookieToken(allowed)!, { sandbox: 'auth-active' }), null, 'resolveSession in another sandbox: null')
})

t.test('each sandbox has its own idle ttl; idle expiry ends a session', async (t) => {
  const { app, clock } = await buildApp({ ttl: '1h', sandboxes: { 'otp-pending': { ttl: '10m' } } })
  t.teardown(async () => { await app.close() })
  const pending = await login(app, { sandbox: 'otp-pending' })
  const active = await login(app)
  clock.advance(10 * 60_000)
  t.equal((await app.inject({ url: '/pending', cookies: { xems: pending } })).statusCode, 401, 'pending died after 10 minutes idle')
  const stillActive = await app.inject({ url: '/me', cookies: { xems: active } })
  t.equal(stillActive.statusCode, 200, 'active lives on')
  let token = setCookieToken(stillActive)!
  clock.advance(59 * 60_000)
  const used = await app.inject({ url: '/me', cookies: { xems: token } })
  t.equal(used.statusCode, 200, 'use refreshes the idle deadline')
  token = setCookieToken(used)!
  clock.advance(60 * 60_000)
  t.equal((await app.inject({ url: '/me', cookies: { xems: token } })).statusCode, 401, 'an hour idle ends it')
})

t.test('the absolute cap ends a session however often it is used', async (t) => {
  const { app, clock } = await buildApp({ ttl: '1h', maxAge: '3h' })
  t.teardown(async () => { await app.close() })
  let token = await login(app)
  for (let i = 0; i < 5; i++) {
    clock.advance(35 * 60_000)
    const response = await app.inject({ url: '/me', cookies: { xems: token } })
    t.equal(response.statusCode, 200)
    token = setCookieToken(response)!
  }
  clock.advance(6 * 60_000)
  t.equal((await app.inject({ url: '/me', cookies: { xems: token } })).statusCode, 401, 'after 3 hours it is over')
})

t.test('regenerate: a new token, same data, every old token dead at once', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  const token = await login(app)
  const write = await app.inject({ method: 'POST', url: '/me', cookies: { xems: token }, payload: { key: 'k', value: 'v' } })
  const beforeRegenerate = setCookieToken(write)!
  const regenerated = await app.inject({ method: 'POST', url: '/regenerate', cookies: { xems: beforeRegenerate } })
  const fresh = setCookieToken(regenerated)!
  t.ok(isWellFormedToken(fresh))
  t.not(fresh, beforeRegenerate)
  t.equal((await app.inject({ url: '/me', cookies: { xems: beforeRegenerate } })).statusCode, 401, 'no grace after regenerate')
  t.equal((await app.inject({ url: '/me', cookies: { xems: token } })).statusCode, 401, 'nor for the token before it')
  const me = await app.inject({ url: '/me', cookies: { xems: fresh } })
  t.same(me.json().data, { user: 'ada', k: 'v' })
})

t.test('destroy() and xUnlink() end the session everywhere and clear the cookie', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  for (const url of ['/destroy', '/logout']) {
    const token = await login(app)
    const rotated = setCookieToken(await app.inject({ url: '/me', cookies: { xems: token } }))!
    const ended = await app.inject({ method: 'POST', url, cookies: { xems: rotated } })
    t.equal(ended.statusCode, 200)
    t.match(setCookieHeader(ended), /xems=; Max-Age=0/, `${url} clears the cookie`)
    t.equal(ended.headers['cache-control'], 'no-store')
    t.equal((await app.inject({ url: '/me', cookies: { xems: rotated } })).statusCode, 401)
    t.equal((await app.inject({ url: '/me', cookies: { xems: token } })).statusCode, 401, 'the token in grace is dead too')
  }
  const anonymous = await app.inject({ method: 'POST', url: '/logout' })
  t.equal(anonymous.statusCode, 200, 'logging out without a session is harmless')
})

t.test('xLink ends the session the request had', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  const first = await login(app, { userId: 'u1' })
  const second = setCookieToken(await app.inject({ method: 'POST', url: '/login', cookies: { xems: first }, payload: { userId: 'u1' } }))!
  t.not(second, first)
  t.equal((await app.inject({ url: '/me', cookies: { xems: first } })).statusCode, 401, 'the earlier session is gone, not left in grace')
  t.equal((await app.xems.listUserSessions('u1')).length, 1)
})

t.test('createLimit answers 429 with Retry-After past max per window, per client', async (t) => {
  const { app, clock } = await buildApp({ createLimit: { max: 3, window: '1m' } })
  t.teardown(async () => { await app.close() })
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ method: 'POST', url: '/login' })).statusCode, 200)
  const limited = await app.inject({ method: 'POST', url: '/login' })
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().code, 'FST_XEMS_RATE_LIMITED')
  t.equal(limited.headers['retry-after'], '60')
  t.equal(limited.headers['set-cookie'], undefined, 'no session was opened')
  t.equal((await app.inject({ method: 'POST', url: '/login', remoteAddress: '10.0.0.2' })).statusCode, 200, 'another client is not limited')
  clock.advance(60_000)
  t.equal((await app.inject({ method: 'POST', url: '/login' })).statusCode, 200, 'a new window')
})

t.test('200 concurrent requests carrying one token: all 2xx, no write lost, one session', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  const token = await login(app, { userId: 'u1' })
  const responses = await Promise.all(Array.from({ length: 200 }, async (_, i) =>
    await app.inject({ method: 'POST', url: '/me', cookies: { xems: token }, payload: { key: `k${i}`, value: i } })))
  t.same(responses.filter((r) => r.statusCode !== 200).map((r) => r.statusCode), [], 'every request succeeded')
  const tokens = new Set(responses.map((r) => setCookieToken(r)))
  t.equal(tokens.size, 1, 'all responses agree on the one current token')
  const current = [...tokens][0]!
  const me = await app.inject({ url: '/me', cookies: { xems: current } })
  const data = me.json().data
  t.equal(Object.keys(data).length, 201)
  t.ok(Array.from({ length: 200 }, (_, i) => data[`k${i}`] === i).every(Boolean), 'every key written')
  t.equal((await app.xems.listUserSessions('u1')).length, 1)
})

t.test('logs never contain a token', async (t) => {
  const { app, logs, clock } = await buildApp()
  t.teardown(async () => { await app.close() })
  const tokens: string[] = []
  tokens.push(await login(app, { userId: 'u1' }))
  for (let i = 0; i < 3; i++) tokens.push(setCookieToken(await app.inject({ url: '/me', cookies: { xems: tokens.at(-1)! } }))!)
  clock.advance(10_001)
  await app.inject({ url: '/me', cookies: { xems: tokens[0]! } })
  await app.inject({ method: 'POST', url: '/logout', cookies: { xems: tokens.at(-1)! } })
  const text = logs.join('\n')
  t.ok(logs.length > 5, 'there are logs to search')
  for (const token of tokens) t.notOk(text.includes(token), 'token absent from logs')
  t.match(text, /session-created/)
  t.match(text, /session-rotated/)
  t.match(text, /token-reuse/)
})

t.test('an earlier onRequest hook that answers (a rate limiter) gets its own answer through onSend', async (t) => {
  const app = Fastify()
  t.teardown(async () => { await app.close() })
  app.addHook('onRequest', async (request, reply) => {
    if (request.url === '/limited') await reply.code(429).send({ limited: true })
  })
  await app.register(xemsSession, { cookie: { secure: false } })
  app.get('/limited', async () => 'never')
  app.get('/open', async (request) => ({ session: request.session }))
  const limited = await app.inject({ url: '/limited', cookies: { xems: 'a-token' } })
  t.equal(limited.statusCode, 429)
  t.same(limited.json(), { limited: true }, 'the hook\'s body, not an error about the missing request state')
  t.equal(limited.headers['set-cookie'], undefined)
  const open = await app.inject({ url: '/open' })
  t.same(open.json(), { session: null }, 'request.session is decorated: null without a token')
})
