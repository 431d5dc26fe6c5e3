import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { buildExample } from '../example/server.js'
import { generateTotp } from '../lib/mfa/totp.js'

// Secure cookies by default: the plugin's __Host-xems.
const token = (response: LightMyRequestResponse): string | undefined => response.cookies.find((c) => c.name === '__Host-xems')?.value

t.test('the example app: register → enrol → sign in with TOTP → account → sign out everywhere → recovery code', async (t) => {
  const app = await buildExample({ logLevel: 'silent' })
  t.teardown(async () => { await app.close() })
  const page = await app.inject({ url: '/' })
  t.equal(page.statusCode, 200)
  t.match(page.body, /<form id="login-form">/)

  const credentials = { email: 'ada@example.com', password: 'correct horse battery staple' }
  t.equal((await app.inject({ method: 'POST', url: '/api/register', payload: { email: 'nope', password: 'x' } })).statusCode, 400)
  t.equal((await app.inject({ method: 'POST', url: '/api/register', payload: credentials })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/api/register', payload: credentials })).statusCode, 409, 'registered once')
  t.equal((await app.inject({ method: 'POST', url: '/api/login', payload: { ...credentials, password: 'wrong password' } })).statusCode, 401)

  const first = await app.inject({ method: 'POST', url: '/api/login', payload: credentials })
  t.same(first.json(), { next: 'active', enrolled: false, remembered: false }, 'no factor yet: signed in directly')
  const noPassword = await app.inject({ method: 'POST', url: '/api/mfa/enrol', cookies: { '__Host-xems': token(first)! } })
  t.equal(noPassword.statusCode, 401, 'enrolment needs the password again')
  const enrol = await app.inject({ method: 'POST', url: '/api/mfa/enrol', cookies: { '__Host-xems': token(noPassword)! }, payload: { password: credentials.password } })
  const { secret, qrSvg } = enrol.json()
  t.match(qrSvg, /^<svg/)
  const confirm = await app.inject({ method: 'POST', url: '/api/mfa/confirm', cookies: { '__Host-xems': token(enrol)! }, payload: { code: await generateTotp({ secret }) } })
  t.equal(confirm.statusCode, 200)
  const recoveryCodes: string[] = confirm.json().recoveryCodes
  t.equal(recoveryCodes.length, 10)

  let current = token(confirm)!
  const fingerprints = new Set<string>()
  for (let i = 0; i < 3; i++) {
    const me = await app.inject({ url: '/api/me', cookies: { '__Host-xems': current } })
    t.equal(me.json().mfaEnrolled, true)
    fingerprints.add(me.json().tokenFingerprint)
    current = token(me)!
  }
  t.equal(fingerprints.size, 3, 'the token changes on every request')

  const pendingLogin = await app.inject({ method: 'POST', url: '/api/login', payload: credentials })
  t.same(pendingLogin.json().next, 'totp')
  const pending = token(pendingLogin)!
  t.equal((await app.inject({ url: '/api/me', cookies: { '__Host-xems': pending } })).statusCode, 401, 'pending is not signed in')
  const recovered = await app.inject({ method: 'POST', url: '/api/mfa/verify', cookies: { '__Host-xems': pending }, payload: { code: recoveryCodes[0] } })
  t.same(recovered.json(), { method: 'recovery', recoveryCodesLeft: 9 })
  const everywhere = await app.inject({ method: 'POST', url: '/api/logout-everywhere', cookies: { '__Host-xems': token(recovered)! } })
  t.equal(everywhere.json().ended, 2, 'both signed-in sessions ended')
  t.equal((await app.inject({ url: '/api/me', cookies: { '__Host-xems': current } })).statusCode, 401)
  t.equal((await app.inject({ url: '/api/me', cookies: { '__Host-xems': token(recovered)! } })).statusCode, 401)
})

t.test('the example picks its store from the environment', async (t) => {
  const { mkdtemp, rm } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const { randomBytes } = await import('node:crypto')
  const { openStore } = await import('../example/store.js')
  const now = Date.now()

  const memory = await openStore({})
  t.match(memory.description, /in memory/)
  await memory.store.kvSet('s', 'k', '"v"', 60_000, now)
  t.equal(await memory.store.kvGet('s', 'k', now), '"v"')
  await memory.close()

  const dir = await mkdtemp(join(tmpdir(), 'xems-example-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const env = { XEMS_SECRET: randomBytes(32).toString('hex'), XEMS_VAULT: join(dir, 'vault') }
  const vault = await openStore(env)
  t.match(vault.description, /encrypted vault/)
  await vault.store.kvSet('s', 'k', '"kept"', 60_000, now)
  await vault.close()
  const reopened = await openStore(env)
  t.equal(await reopened.store.kvGet('s', 'k', now), '"kept"', 'XEMS_SECRET keeps data across a restart')
  await reopened.close()

  const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
  const schema = `xems_example_test_${randomBytes(4).toString('hex')}`
  const postgres = await openStore({ DATABASE_URL: databaseUrl, XEMS_SECRET: env.XEMS_SECRET, XEMS_PG_SCHEMA: schema }).catch((err: unknown) => err as Error)
  if (postgres instanceof Error) {
    if (process.env.CI !== undefined) t.fail(`PostgreSQL is not reachable at ${databaseUrl}: ${postgres.message}`)
    else t.comment(`PostgreSQL not reachable at ${databaseUrl}: the DATABASE_URL case was not run`)
  } else {
    t.match(postgres.description, /^PostgreSQL at /)
    await postgres.store.kvSet('example-test', 'k', '"p"', 60_000, now)
    await postgres.close()
    const again = await openStore({ DATABASE_URL: databaseUrl, XEMS_SECRET: env.XEMS_SECRET, XEMS_PG_SCHEMA: schema })
    t.equal(await again.store.kvGet('example-test', 'k', now), '"p"', 'DATABASE_URL + XEMS_SECRET keep data across a restart')
    await again.close()
    const { default: pg } = await import('pg')
    const cleaner = new pg.Client({ connectionString: databaseUrl })
    await cleaner.connect()
    await cleaner.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await cleaner.end()
  }

  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
  const prefix = `xems-example-test-${randomBytes(6).toString('hex')}:`
  const redis = await openStore({ REDIS_URL: redisUrl, XEMS_SECRET: env.XEMS_SECRET, XEMS_REDIS_PREFIX: prefix }).catch((err: unknown) => err as Error)
  if (redis instanceof Error) {
    if (process.env.CI !== undefined) t.fail(`Redis is not reachable at ${redisUrl}: ${redis.message}`)
    else t.comment(`Redis not reachable at ${redisUrl}: the REDIS_URL case was not run`)
    return
  }
  t.match(redis.description, /^Redis at /)
  await redis.store.kvSet('example-test', 'k', '"r"', 60_000, now)
  t.equal(await redis.store.kvGet('example-test', 'k', now), '"r"')
  await redis.store.kvDel('example-test', 'k')
  await redis.close()
  const { Redis } = await import('ioredis')
  const cleaner = new Redis(redisUrl)
  const keys = await cleaner.keys(`${prefix}*`)
  if (keys.length > 0) await cleaner.del(...keys)
  cleaner.disconnect()
})

t.test('the example guards factor changes with the password and a fresh code', async (t) => {
  const app = await buildExample({ logLevel: 'silent' })
  t.teardown(async () => { await app.close() })
  const credentials = { email: 'ada@example.com', password: 'correct horse battery staple' }
  await app.inject({ method: 'POST', url: '/api/register', payload: credentials })
  const first = await app.inject({ method: 'POST', url: '/api/login', payload: credentials })
  const enrol = await app.inject({ method: 'POST', url: '/api/mfa/enrol', cookies: { '__Host-xems': token(first)! }, payload: { password: credentials.password } })
  const { secret } = enrol.json()
  const confirm = await app.inject({ method: 'POST', url: '/api/mfa/confirm', cookies: { '__Host-xems': token(enrol)! }, payload: { code: await generateTotp({ secret }) } })
  t.equal(confirm.statusCode, 200)
  // The enrolling session (or a thief holding its cookie) has the password but no fresh code.
  let current = token(confirm)!
  for (const url of ['/api/mfa/enrol', '/api/mfa/recovery-codes', '/api/mfa/disable']) {
    const refused = await app.inject({ method: 'POST', url, cookies: { '__Host-xems': current }, payload: { password: credentials.password } })
    t.equal(refused.statusCode, 401, `${url}: refused without a fresh code`)
    t.equal(refused.json().code, 'FST_XEMS_MFA_REQUIRED')
    current = token(refused) ?? current
  }
  const stepUp = await app.inject({
    method: 'POST', url: '/api/mfa/step-up', cookies: { '__Host-xems': current }, payload: { code: await generateTotp({ secret, at: Date.now() + 30_000 }) }
  })
  t.equal(stepUp.statusCode, 200)
  current = token(stepUp)!
  const wrongPassword = await app.inject({ method: 'POST', url: '/api/mfa/disable', cookies: { '__Host-xems': current }, payload: { password: 'wrong password' } })
  t.equal(wrongPassword.statusCode, 401, 'a fresh code without the password is not enough')
  current = token(wrongPassword) ?? current
  const codes = await app.inject({ method: 'POST', url: '/api/mfa/recovery-codes', cookies: { '__Host-xems': current }, payload: { password: credentials.password } })
  t.equal(codes.statusCode, 200)
  t.equal(codes.json().recoveryCodes.length, 10)
  current = token(codes)!
  const disabled = await app.inject({ method: 'POST', url: '/api/mfa/disable', cookies: { '__Host-xems': current }, payload: { password: credentials.password } })
  t.equal(disabled.statusCode, 200, 'password + fresh code: the factor is removed')
  const me = await app.inject({ url: '/api/me', cookies: { '__Host-xems': token(disabled)! } })
  t.equal(me.json().mfaEnrolled, false)
})

t.test('the example: one error shape, expected 401s logged without a stack, devices behind a fresh code', async (t) => {
  const lines: string[] = []
  const app = await buildExample({ logLevel: 'info', logStream: { write: (line) => { lines.push(line) } } })
  t.teardown(async () => { await app.close() })
  const credentials = { email: 'eve@example.com', password: 'correct horse battery staple' }
  for (const response of [
    await app.inject({ method: 'POST', url: '/api/register', payload: { email: 'nope', password: 'x' } }),
    await app.inject({ method: 'POST', url: '/api/login', payload: { ...credentials, password: 'wrong password' } }),
    await app.inject({ url: '/api/me' }),
    await app.inject({ method: 'POST', url: '/api/mfa/verify', payload: { code: '123456' } })
  ]) {
    t.match(response.json(), { statusCode: response.statusCode, code: String, error: String, message: /^[A-Z]/ }, `${response.statusCode}: { statusCode, code, error, message }`)
  }
  t.notOk(lines.some((line) => line.includes('"stack"')), 'no stack trace for an expected refusal')
  t.ok(lines.some((line) => line.includes('request refused')), 'one line instead')

  t.equal((await app.inject({ method: 'POST', url: '/api/register', payload: credentials })).statusCode, 200)
  const ua = 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0'
  const login = await app.inject({ method: 'POST', url: '/api/login', payload: credentials, headers: { 'user-agent': ua } })
  let cookie = token(login)!
  const send = async (method: 'GET' | 'POST', url: string, payload?: Record<string, unknown>): Promise<LightMyRequestResponse> => {
    const response = await app.inject({ method, url, headers: { 'user-agent': ua }, cookies: { '__Host-xems': cookie }, ...(payload === undefined ? {} : { payload }) })
    cookie = token(response) ?? cookie
    return response
  }
  const refused = await send('GET', '/api/devices')
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, 'FST_XEMS_MFA_REQUIRED', 'the list needs a fresh second factor')
  t.equal((await send('POST', '/api/devices/sign-out-others')).json().code, 'FST_XEMS_MFA_REQUIRED', 'so does signing others out')
  const { secret } = (await send('POST', '/api/mfa/enrol', { password: credentials.password })).json()
  t.equal((await send('POST', '/api/mfa/confirm', { code: await generateTotp({ secret }) })).statusCode, 200)
  t.equal((await send('POST', '/api/mfa/step-up', { code: await generateTotp({ secret, at: Date.now() + 30_000 }) })).statusCode, 200)
  const devices = await send('GET', '/api/devices')
  t.equal(devices.statusCode, 200)
  t.equal(devices.headers['cache-control'], 'no-store')
  t.match(devices.json(), [{ current: true, browser: 'Firefox 133', os: 'Linux', type: 'desktop', ip: '127.0.0.1', signIn: 'password', id: String }])
  t.equal((await send('POST', '/api/devices/nope/sign-out')).statusCode, 404)
  const cross = await app.inject({ method: 'POST', url: '/api/devices/sign-out-others', cookies: { '__Host-xems': cookie }, headers: { 'sec-fetch-site': 'cross-site' } })
  t.equal(cross.statusCode, 403, 'the CSRF check is on in the example')
  const out = await send('POST', '/api/logout-everywhere')
  t.equal(out.headers['cache-control'], 'no-store')
  t.equal(out.headers['clear-site-data'], '"cache"')
})

t.test('the example turns DBSC on: /api/me says whether the session is device-bound', async (t) => {
  const { DbscBrowser } = await import('./bindings/dbsc-client.js')
  const app = await buildExample({ logLevel: 'silent' })
  t.teardown(async () => { await app.close() })
  const clock = { now: Date.now(), advance () {} }
  const credentials = { email: 'bound@example.com', password: 'correct horse battery staple' }
  const plain = new DbscBrowser(app, clock, { dbsc: false })
  t.equal((await plain.send('POST', '/api/register', credentials)).statusCode, 200)
  const login = await plain.send('POST', '/api/login', credentials)
  t.match(login.headers['secure-session-registration'], /^\(ES256 RS256\);path="\/xems\/dbsc\/register"/, 'the sign-in offers DBSC')
  t.equal((await plain.fetch('GET', '/api/me')).json().deviceBound, null, 'a browser without DBSC: not bound, served as before')

  const dbsc = new DbscBrowser(app, clock)
  await dbsc.send('POST', '/api/login', credentials)
  t.ok(dbsc.session, 'the DBSC browser registered')
  t.equal((await dbsc.fetch('GET', '/api/me')).json().deviceBound, 'dbsc')
  dbsc.jar.delete(dbsc.session!.cookieName)
  t.equal((await dbsc.send('GET', '/api/me')).statusCode, 401, 'without its bound cookie the session is not served')
})

t.test('the example\'s passkeys: the browser bundle is served, the routes follow the session, the origin is the one given', async (t) => {
  const { SoftAuthenticator } = await import('./helpers/soft-authenticator.js')
  const origin = 'http://localhost:4321'
  const app = await buildExample({ logLevel: 'silent', origin })
  t.teardown(async () => { await app.close() })
  const bundle = await app.inject({ url: '/vendor/simplewebauthn-browser.js' })
  t.equal(bundle.statusCode, 200)
  t.match(bundle.headers['content-type'], /^text\/javascript/)
  t.match(bundle.body, /SimpleWebAuthnBrowser/, 'the prebuilt bundle from node_modules')
  t.equal((await app.inject({ url: '/api/mfa/passkeys' })).statusCode, 401, 'the list needs a session')

  const credentials = { email: 'pat@example.com', password: 'correct horse battery staple' }
  await app.inject({ method: 'POST', url: '/api/register', payload: credentials })
  let cookie = token(await app.inject({ method: 'POST', url: '/api/login', payload: credentials }))!
  const send = async (url: string, payload?: object): Promise<LightMyRequestResponse> => {
    const response = await app.inject({ method: payload === undefined ? 'GET' : 'POST', url, cookies: { '__Host-xems': cookie }, ...(payload === undefined ? {} : { payload }) })
    cookie = token(response) ?? cookie
    return response
  }
  t.equal((await send('/api/mfa/passkeys/register/options', { password: 'wrong password' })).statusCode, 401, 'adding a passkey needs the password')
  const options = (await send('/api/mfa/passkeys/register/options', { password: credentials.password })).json()
  t.equal(options.rp.id, 'localhost', 'the relying party is the origin\'s host')
  const authenticator = new SoftAuthenticator({ origin })
  const added = await send('/api/mfa/passkeys/register', { response: authenticator.create(options), name: 'Phone' })
  t.equal(added.statusCode, 200)
  t.match((await send('/api/mfa/passkeys')).json(), [{ name: 'Phone', lastUsedAt: null }])
  t.equal((await send('/api/me')).json().passkeys, 1)

  // Passwordless, from a fresh browser: an answer made on another origin is refused, the right one signs in.
  const anonymous = await app.inject({ method: 'POST', url: '/api/mfa/passkeys/auth/options' })
  let pending = token(anonymous)!
  const phished = await app.inject({ method: 'POST', url: '/api/mfa/passkeys/auth', cookies: { '__Host-xems': pending }, payload: { response: authenticator.get(anonymous.json(), { origin: 'http://localhost:9999' }) } })
  t.equal(phished.statusCode, 403, 'an answer made on another origin is refused')
  const again = await app.inject({ method: 'POST', url: '/api/mfa/passkeys/auth/options', cookies: { '__Host-xems': token(phished) ?? pending } })
  pending = token(again) ?? pending
  const signedIn = await app.inject({ method: 'POST', url: '/api/mfa/passkeys/auth', cookies: { '__Host-xems': pending }, payload: { response: authenticator.get(again.json()) } })
  t.match(signedIn.json(), { method: 'passkey', ceremony: 'passwordless', userVerified: true, next: 'active' })
  const me = (await app.inject({ url: '/api/me', cookies: { '__Host-xems': token(signedIn)! } })).json()
  t.match(me, { email: credentials.email, signIn: 'passkey', passkeys: 1 }, 'found by the user handle index, signed in without a password')

  await t.rejects(buildExample({ logLevel: 'silent', origin: 'http://127.0.0.1:3000' }), /passkeys\.rpId/, 'an IP origin cannot carry passkeys: the option to change is named')
})
