/**
 * Device Bound Session Credentials, server side, driven by a protocol-level browser (dbsc-client.ts, its
 * own ES256 key, the W3C draft step by step): registration on sign-in, refresh with and without a cached
 * challenge, a copied cookie jar refused once the bound cookie expires, a proof by another key refused,
 * a replayed challenge refused (of 100 parallel replays exactly one refresh succeeds), ending a session,
 * and browsers without DBSC left as they were.
 */
import t from 'tap'
import { buildApp } from '../helpers.js'
import { DbscBrowser } from './dbsc-client.js'

const LIFETIME = 10 * 60_000

async function dbscApp (deviceBound: Record<string, unknown> | true = true): Promise<Awaited<ReturnType<typeof buildApp>>> {
  return await buildApp({ deviceBound: deviceBound as true })
}

t.test('registration on sign-in: the browser proves its key, gets the instructions and the bound cookie', async (t) => {
  const { app } = await dbscApp()
  t.teardown(async () => { await app.close() })
  const raw = await app.inject({ method: 'POST', url: '/login' })
  t.match(raw.headers['secure-session-registration'], /^\(ES256 RS256\);path="\/xems\/dbsc\/register";challenge="[A-Za-z0-9_-]{22}"$/)
  t.equal((await app.inject({ url: '/me', cookies: { xems: raw.cookies[0]!.value } })).headers['secure-session-registration'], undefined, 'offered on the sign-in response only')

  const b = new DbscBrowser(app, { now: Date.now(), advance () {} })
  const login = await b.send('POST', '/login')
  t.equal(login.statusCode, 200)
  t.ok(b.session, 'registered')
  const registration = b.log[1]!
  t.same(registration, { method: 'POST', url: '/xems/dbsc/register', status: 200 })
  t.equal(b.session!.cookieName, 'xems-bound')
  t.equal(b.session!.refreshUrl, '/xems/dbsc/refresh')
  t.ok(b.session!.challenge, 'a challenge for the next refresh came with the registration')
  t.ok(b.cookies()['xems-bound'], 'the bound cookie is set')
  const me = await b.fetch('GET', '/me')
  t.equal(me.statusCode, 200)
  t.equal(me.json().data.user, 'ada')
})

t.test('the registration answer is the draft\'s session instructions; a second registration is refused', async (t) => {
  const { app } = await dbscApp({ cookieLifetime: '2m' })
  t.teardown(async () => { await app.close() })
  const clock = { now: Date.now(), advance () {} }
  const b = new DbscBrowser(app, clock, { dbsc: false })
  const login = await b.send('POST', '/login')
  const header = login.headers['secure-session-registration'] as string
  const dbsc = new DbscBrowser(app, clock)
  for (const [name, cookie] of b.jar) dbsc.jar.set(name, cookie)
  const answer = (await dbsc.register(header))!
  t.equal(answer.statusCode, 200)
  t.equal(answer.headers['cache-control'], 'no-store')
  t.same(answer.json(), {
    session_identifier: dbsc.session!.id,
    refresh_url: '/xems/dbsc/refresh',
    scope: { include_site: false },
    credentials: [{ type: 'cookie', name: 'xems-bound', attributes: 'Path=/; HttpOnly; SameSite=Lax' }]
  })
  t.match(answer.headers['set-cookie'], /xems-bound=[0-9a-z]+\.[A-Za-z0-9_-]{43}; Max-Age=120; Path=\/; HttpOnly; SameSite=Lax/)
  t.match(answer.headers['secure-session-challenge'], new RegExp(`^"[A-Za-z0-9_-]{22}";id="${dbsc.session!.id}"$`))

  const again = await dbsc.register(header)
  t.equal(again!.statusCode, 409, 'the same registration challenge again: the session is already bound')
  t.equal(again!.json().code, 'FST_XEMS_DBSC_BOUND')
})

t.test('refresh: an expired bound cookie is refreshed with the cached challenge, or after a 403 with a fresh one; the session token keeps rotating', async (t) => {
  const { app, clock } = await dbscApp()
  t.teardown(async () => { await app.close() })
  const b = new DbscBrowser(app, clock)
  await b.send('POST', '/login')
  const tokenBefore = b.cookies().xems
  clock.advance(LIFETIME + 1)
  t.equal(b.cookies()['xems-bound'], undefined, 'the bound cookie expired in the jar')
  const me = await b.fetch('GET', '/me')
  t.equal(me.statusCode, 200, 'served after the refresh')
  t.same(b.log.slice(-2).map((e) => `${e.url} ${e.status}`), ['/xems/dbsc/refresh 200', '/me 200'], 'one refresh, with the cached challenge')
  t.not(b.cookies().xems, tokenBefore, 'the long-lived token rotated on the way')

  b.session!.challenge = null
  clock.advance(LIFETIME + 1)
  t.equal((await b.fetch('GET', '/me')).statusCode, 200)
  t.same(
    b.log.slice(-3).map((e) => `${e.url} ${e.status}`), ['/xems/dbsc/refresh 403', '/xems/dbsc/refresh 200', '/me 200'], 'no cached challenge: 403 with one, then the signed retry'
  )
})

t.test('a copied cookie jar: works until the bound cookie expires, then cannot be refreshed without the key', async (t) => {
  const { app, clock } = await dbscApp()
  t.teardown(async () => { await app.close() })
  const victim = new DbscBrowser(app, clock)
  await victim.send('POST', '/login')
  const thief = new DbscBrowser(app, clock, { dbsc: false })
  for (const [name, cookie] of victim.jar) thief.jar.set(name, { ...cookie })

  const tokenOnly = await app.inject({ url: '/me', cookies: { xems: victim.cookies().xems! }, headers: { 'sec-fetch-site': 'same-origin' } })
  t.equal(tokenOnly.statusCode, 401, 'the long-lived token without the bound cookie is not the session')
  t.equal(tokenOnly.json().code, 'FST_XEMS_NO_SESSION')
  const byHeader = await app.inject({ url: '/me', headers: { 'x-xems-token': victim.cookies().xems! } })
  t.equal(byHeader.statusCode, 401, 'nor is it when replayed in the header')

  clock.advance(LIFETIME + 1)
  t.equal((await thief.fetch('GET', '/me')).statusCode, 401, 'the copied bound cookie expired')
  // The thief knows the protocol, not the key: no proof, then a proof by its own key.
  const impostor = new DbscBrowser(app, clock)
  for (const [name, cookie] of thief.jar) impostor.jar.set(name, { ...cookie })
  const { generateKeyPair, exportJWK } = await import('jose')
  const keys = await generateKeyPair('ES256')
  impostor.session = {
    id: victim.session!.id, refreshUrl: '/xems/dbsc/refresh', cookieName: 'xems-bound', privateKey: keys.privateKey, publicJwk: await exportJWK(keys.publicKey), challenge: null
  }
  const refused = await impostor.refresh()
  t.equal(refused!.statusCode, 400, 'the 403 challenge, signed by another key')
  t.equal(refused!.json().code, 'FST_XEMS_DBSC_INVALID')
  t.same(impostor.log.map((e) => e.status), [403, 400])
  t.equal(impostor.cookies()['xems-bound'], undefined, 'no bound cookie for the thief')
  t.equal((await thief.fetch('GET', '/me')).statusCode, 401)

  // The refresh route is served by the session token (that is how it finds the session), so the thief's
  // attempts rotated it: when the victim comes back after the grace period, its token is an earlier one.
  clock.advance(11_000)
  t.equal((await victim.fetch('GET', '/me')).statusCode, 401)
  t.same(victim.log.slice(-2).map((e) => `${e.url} ${e.status}`), ['/xems/dbsc/refresh 401', '/me 401'], 'the theft signal: the session is revoked')
  t.equal(victim.session, null, 'and the browser dropped its DBSC session (a 4xx other than 403)')
  t.equal((await thief.fetch('GET', '/me')).statusCode, 401, 'for the thief too')
})

t.test('a replayed refresh proof is refused; of 100 parallel refreshes with one proof exactly one gets a cookie', async (t) => {
  const { app, clock } = await dbscApp()
  t.teardown(async () => { await app.close() })
  const b = new DbscBrowser(app, clock)
  await b.send('POST', '/login')
  const session = b.session!
  const proof = await b.sign(session.privateKey, session.challenge!)
  const refresh = async (): Promise<import('fastify').LightMyRequestResponse> => await app.inject({
    method: 'POST',
    url: '/xems/dbsc/refresh',
    cookies: { xems: b.cookies().xems! },
    headers: { 'sec-fetch-site': 'same-origin', 'sec-secure-session-id': `"${session.id}"`, 'secure-session-response': `"${proof}"` }
  })
  const answers = await Promise.all(Array.from({ length: 100 }, refresh))
  t.equal(answers.filter((r) => r.statusCode === 200).length, 1, 'exactly one')
  const others = answers.filter((r) => r.statusCode !== 200)
  t.ok(
    others.every((r) => r.statusCode === 403 && r.json().code === 'FST_XEMS_DBSC_CHALLENGE' && typeof r.headers['secure-session-challenge'] === 'string'),
    'the other 99: 403 with a fresh challenge'
  )
  t.ok(others.every((r) => !r.cookies.some((c) => c.name === 'xems-bound')), 'and no bound cookie')
})

t.test('ending the session: sign-out clears the bound cookie and the next refresh answers {"continue": false}', async (t) => {
  const { app, clock } = await dbscApp()
  t.teardown(async () => { await app.close() })
  const b = new DbscBrowser(app, clock)
  await b.send('POST', '/login')
  const out = await b.fetch('POST', '/logout')
  t.equal(out.statusCode, 200)
  t.ok(out.cookies.some((c) => c.name === 'xems-bound' && c.value === ''), 'the bound cookie is cleared')
  t.ok(b.session, 'the browser still has its DBSC session')
  const refreshed = await b.refresh()
  t.equal(refreshed!.statusCode, 200)
  t.same(refreshed!.json(), { continue: false })
  t.equal(b.session, null, 'and drops it')

  const other = new DbscBrowser(app, clock)
  await other.send('POST', '/login', { userId: 'u1' })
  await app.xems.revokeUser('u1')
  await other.refresh()
  t.equal(other.session, null, 'a session revoked elsewhere ends the browser\'s DBSC session too')
})

t.test('browsers without DBSC and header clients keep today\'s behaviour; Secure-Session-Skipped is logged, not obeyed', async (t) => {
  const { app, logs, clock } = await dbscApp()
  t.teardown(async () => { await app.close() })
  const plain = new DbscBrowser(app, clock, { dbsc: false })
  await plain.send('POST', '/login')
  clock.advance(LIFETIME + 1)
  t.equal((await plain.fetch('GET', '/me')).statusCode, 200, 'an unbound session is served by its token, as without the option')

  const header = await app.inject({ method: 'POST', url: '/login', headers: { 'x-xems-token': '' } })
  t.equal(header.headers['secure-session-registration'], undefined, 'no registration offered to a header client')

  const b = new DbscBrowser(app, clock)
  await b.send('POST', '/login')
  b.jar.delete('xems-bound')
  const skipped = await b.send('GET', '/me', undefined, { 'secure-session-skipped': `unreachable;session_identifier="${b.session!.id}"` })
  t.equal(skipped.statusCode, 401, 'a browser that skipped the refresh is not served as the bound session')
  t.ok(logs.some((line) => line.includes('dbsc-unbound-request') && line.includes('"skipped":["unreachable"]')), 'the skip is logged')
})

t.test('bad deviceBound options fail at register, naming the option', async (t) => {
  for (const [deviceBound, option] of [
    [{ cookieLifetime: '2h' }, 'deviceBound.cookieLifetime'],
    [{ registrationPath: 'register' }, 'deviceBound.registrationPath'],
    [{ refreshPath: '/xems/dbsc/register' }, 'deviceBound.refreshPath'],
    [{ algorithms: ['EdDSA'] }, 'deviceBound.algorithms'],
    [{ cookieName: 'xems' }, 'deviceBound.cookieName']
  ] as const) {
    await t.rejects(buildApp({ deviceBound: deviceBound as never }), { code: 'FST_XEMS_BAD_OPTION', message: new RegExp(`"${option.replace('.', '\\.')}"`) }, option)
  }
  await t.rejects(buildApp({ deviceBound: true, cookie: false }), { code: 'FST_XEMS_BAD_OPTION', message: /"deviceBound" needs the cookie transport/ })
})
