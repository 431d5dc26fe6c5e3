/**
 * DPoP (RFC 9449) for header clients, with real ES256 key pairs: a sign-in with a proof binds the session
 * to the key; from then on a request is served as the session only with a fresh proof of that key for
 * this method, URL and token. A stolen token alone, a replayed proof, a proof for another URL or method,
 * an old proof or one by another key: 401 with a stable code and a `WWW-Authenticate: DPoP` challenge.
 */
import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildApp } from '../helpers.js'
import { DpopClient } from './dpop-client.js'

const BASE = 'http://localhost'

async function dpopApp (dpop: Record<string, unknown> | true = true): Promise<Awaited<ReturnType<typeof buildApp>>> {
  const built = await buildApp({ dpop: dpop as true })
  built.app.post('/promote', async (request) => {
    await request.session!.migrate('auth-active', { data: { user: 'ada', promoted: true } })
    return { ok: true }
  })
  return built
}

/** Signs in as a header client with a proof; returns the token. */
async function signIn (app: FastifyInstance, client: DpopClient, body: Record<string, unknown> = {}): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/login', payload: body, headers: { 'x-xems-token': '', dpop: await client.proof('POST', BASE + '/login') } })
  if (response.statusCode !== 200) throw new Error(`sign-in failed: ${response.statusCode} ${response.body}`)
  return response.headers['x-xems-token'] as string
}

async function get (app: FastifyInstance, token: string, dpop?: string, url = '/me'): Promise<LightMyRequestResponse> {
  return await app.inject({ url, headers: { 'x-xems-token': token, ...(dpop === undefined ? {} : { dpop }) } })
}

t.test('a DPoP sign-in binds the session: every request with a fresh proof works and rotates; the token alone is refused', async (t) => {
  const { app } = await dpopApp()
  t.teardown(async () => { await app.close() })
  const client = await DpopClient.create()
  let token = await signIn(app, client)
  for (let i = 0; i < 3; i++) {
    const response = await get(app, token, await client.proof('GET', BASE + '/me', { token }))
    t.equal(response.statusCode, 200, `request ${i + 1} with a proof`)
    t.equal(response.json().data.user, 'ada')
    const next = response.headers['x-xems-token'] as string
    t.not(next, token, 'rotated')
    token = next
  }
  const stolen = await get(app, token)
  t.equal(stolen.statusCode, 401, 'the newest token without a proof')
  t.equal(stolen.json().code, 'FST_XEMS_DPOP_MISSING')
  t.match(stolen.headers['www-authenticate'], /^DPoP algs="ES256 /)
  t.equal(stolen.headers['x-xems-token'], undefined, 'no token handed out')
  const again = await get(app, token, await client.proof('GET', BASE + '/me', { token }))
  t.equal(again.statusCode, 200, 'the client holding the key carries on with the same token: the refused request did not rotate it')
})

t.test('app.xems.resolveSession (WebSockets, jobs) fails closed on a bound session unless the caller checks the key', async (t) => {
  const { app } = await dpopApp()
  t.teardown(async () => { await app.close() })
  const client = await DpopClient.create()
  const token = await signIn(app, client)
  t.equal(await app.xems.resolveSession(token), null, 'the token alone')
  const resolved = await app.xems.resolveSession(token, { allowBound: true })
  t.match(resolved?.binding, { type: 'dpop', jkt: /^[A-Za-z0-9_-]{43}$/ })
  const bearer = await app.inject({ method: 'POST', url: '/login', headers: { 'x-xems-token': '' } })
  t.equal((await app.xems.resolveSession(bearer.headers['x-xems-token']))?.binding, null, 'an unbound session resolves as before')
})

t.test('a thief with the token and a key of its own: FST_XEMS_DPOP_WRONG_KEY', async (t) => {
  const { app } = await dpopApp()
  t.teardown(async () => { await app.close() })
  const client = await DpopClient.create()
  const thief = await DpopClient.create()
  const token = await signIn(app, client)
  const response = await get(app, token, await thief.proof('GET', BASE + '/me', { token }))
  t.equal(response.statusCode, 401)
  t.equal(response.json().code, 'FST_XEMS_DPOP_WRONG_KEY')
  t.match(response.headers['www-authenticate'], /error="invalid_dpop_proof"/)
})

t.test('a replayed proof is refused; of 200 parallel replays of one proof exactly one is served', async (t) => {
  const { app } = await dpopApp()
  t.teardown(async () => { await app.close() })
  const client = await DpopClient.create()
  let token = await signIn(app, client)
  const proof = await client.proof('GET', BASE + '/me', { token })
  const first = await get(app, token, proof)
  t.equal(first.statusCode, 200)
  token = first.headers['x-xems-token'] as string
  const replay = await get(app, token, proof)
  t.equal(replay.statusCode, 401)
  t.equal(replay.json().code, 'FST_XEMS_DPOP_ATH', 'the old proof names the old token')

  const parallel = await client.proof('GET', BASE + '/me', { token })
  const answers = await Promise.all(Array.from({ length: 200 }, async () => await get(app, token, parallel)))
  const served = answers.filter((r) => r.statusCode === 200)
  t.equal(served.length, 1, 'exactly one served')
  t.ok(answers.filter((r) => r.statusCode !== 200).every((r) => r.statusCode === 401 && r.json().code === 'FST_XEMS_DPOP_REPLAYED'), 'the other 199: FST_XEMS_DPOP_REPLAYED')
})

t.test('a proof for another URL or another method, an old one, one for another token, a forged one: each its own code', async (t) => {
  const { app, clock } = await dpopApp()
  t.teardown(async () => { await app.close() })
  const client = await DpopClient.create()
  const token = await signIn(app, client)
  const cases: Array<[string, string, string]> = [
    ['another URL', await client.proof('GET', BASE + '/public', { token }), 'FST_XEMS_DPOP_WRONG_TARGET'],
    ['another method', await client.proof('POST', BASE + '/me', { token }), 'FST_XEMS_DPOP_WRONG_TARGET'],
    ['another origin', await client.proof('GET', 'https://localhost/me', { token }), 'FST_XEMS_DPOP_WRONG_TARGET'],
    ['iat 2 minutes ago', await client.proof('GET', BASE + '/me', { token, iat: Math.floor(clock.now / 1000) - 120 }), 'FST_XEMS_DPOP_STALE'],
    ['iat 2 minutes ahead', await client.proof('GET', BASE + '/me', { token, iat: Math.floor(clock.now / 1000) + 120 }), 'FST_XEMS_DPOP_STALE'],
    ['ath of another token', await client.proof('GET', BASE + '/me', { token: token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A') }), 'FST_XEMS_DPOP_ATH'],
    ['no ath', await client.proof('GET', BASE + '/me'), 'FST_XEMS_DPOP_ATH'],
    ['a changed payload', tamper(await client.proof('GET', BASE + '/me', { token })), 'FST_XEMS_DPOP_INVALID'],
    ['not a JWT', 'hello', 'FST_XEMS_DPOP_INVALID']
  ]
  for (const [what, proof, code] of cases) {
    const response = await get(app, token, proof)
    t.equal(response.statusCode, 401, what)
    t.equal(response.json().code, code, what)
  }
  const query = await app.inject({ url: '/me?x=1', headers: { 'x-xems-token': token, dpop: await client.proof('GET', BASE + '/me', { token }) } })
  t.equal(query.statusCode, 200, 'the query is not part of htu')
})

t.test('server nonces: a proof without the current nonce gets use_dpop_nonce and the nonce; with it, it works', async (t) => {
  const { app, clock } = await dpopApp({ nonce: { window: '1m' } })
  t.teardown(async () => { await app.close() })
  const client = await DpopClient.create()
  const first = await app.inject({ method: 'POST', url: '/login', headers: { 'x-xems-token': '', dpop: await client.proof('POST', BASE + '/login') } })
  t.equal(first.statusCode, 401)
  t.equal(first.json().code, 'FST_XEMS_DPOP_NONCE')
  t.match(first.headers['www-authenticate'], /error="use_dpop_nonce"/)
  const nonce = first.headers['dpop-nonce'] as string
  t.type(nonce, 'string')
  const login = await app.inject({ method: 'POST', url: '/login', headers: { 'x-xems-token': '', dpop: await client.proof('POST', BASE + '/login', { nonce }) } })
  t.equal(login.statusCode, 200)
  const token = login.headers['x-xems-token'] as string
  // Into the next window, 1 s past its start (a plain 61 s would cross two windows when the clock, which
  // starts at Date.now(), began in the last second of one: about one run in sixty).
  clock.advance(60_000 - (clock.now % 60_000) + 1_000)
  const response = await get(app, token, await client.proof('GET', BASE + '/me', { token, nonce, iat: Math.floor(clock.now / 1000) }))
  t.equal(response.statusCode, 200, 'the previous window\'s nonce is still accepted')
  clock.advance(60_000)
  const late = await get(
    app, response.headers['x-xems-token'] as string,
    await client.proof('GET', BASE + '/me', { token: response.headers['x-xems-token'] as string, nonce, iat: Math.floor(clock.now / 1000) })
  )
  t.equal(late.json().code, 'FST_XEMS_DPOP_NONCE', 'two windows later it is not')
  t.not(late.headers['dpop-nonce'], nonce, 'and the answer carries the new one')
})

t.test('the binding survives migration (with new data) and regeneration; a sign-in without a proof stays a bearer session unless required', async (t) => {
  const { app } = await dpopApp()
  t.teardown(async () => { await app.close() })
  const client = await DpopClient.create()
  let token = await signIn(app, client, { sandbox: 'otp-pending' })
  t.equal((await get(app, token, undefined, '/public')).statusCode, 401, 'bound while pending')
  for (const step of ['/promote', '/regenerate']) {
    const moved = await app.inject({ method: 'POST', url: step, headers: { 'x-xems-token': token, dpop: await client.proof('POST', BASE + step, { token }) } })
    t.equal(moved.statusCode, 200, step)
    token = moved.headers['x-xems-token'] as string
    t.equal((await get(app, token)).json().code, 'FST_XEMS_DPOP_MISSING', `still bound after ${step}`)
  }
  const me = await get(app, token, await client.proof('GET', BASE + '/me', { token }))
  t.same(me.json().data, { user: 'ada', promoted: true })

  const bearer = await app.inject({ method: 'POST', url: '/login', headers: { 'x-xems-token': '' } })
  t.equal(bearer.statusCode, 200)
  t.equal((await get(app, bearer.headers['x-xems-token'] as string)).statusCode, 200, 'no proof at sign-in: the token alone works, as without the option')

  const { app: strict } = await dpopApp({ required: true })
  t.teardown(async () => { await strict.close() })
  const refused = await strict.inject({ method: 'POST', url: '/login', headers: { 'x-xems-token': '' } })
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, 'FST_XEMS_DPOP_MISSING')
})

t.test('bad dpop options fail at register, naming the option', async (t) => {
  for (const [dpop, option] of [
    [{ iatWindow: '10m' }, 'dpop.iatWindow'],
    [{ algorithms: ['HS256'] }, 'dpop.algorithms'],
    [{ nonce: { secret: 'short' } }, 'dpop.nonce.secret'],
    [{ origin: 'https://api.example.com/path' }, 'dpop.origin'],
    [{ required: 'yes' }, 'dpop.required']
  ] as const) {
    await t.rejects(buildApp({ dpop: dpop as never }), { code: 'FST_XEMS_BAD_OPTION', message: new RegExp(`"${option.replace('.', '\\.')}`) }, option)
  }
  await t.rejects(buildApp({ dpop: true, header: false }), { code: 'FST_XEMS_BAD_OPTION', message: /"dpop" needs the header transport/ })
})

function tamper (jwt: string): string {
  const [h, p, s] = jwt.split('.')
  const payload = JSON.parse(Buffer.from(p!, 'base64url').toString())
  payload.htm = 'GET'
  payload.extra = 1
  return `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`
}
