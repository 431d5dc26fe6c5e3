/**
 * Issue 15: passkeys in xemsMfa, driven by a software ES256 authenticator (test/helpers/soft-authenticator.ts)
 * whose signatures @simplewebauthn/server verifies for real: registration, second factor, step-up,
 * passwordless, and every failure answer with its code and status.
 */
import Fastify, { type LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { xemsSession } from '../../../index.js'
import { generateTotp } from '../../../lib/mfa/totp.js'
import type { SecurityEvent } from '../../../lib/security-events.js'
import { xemsMfa, type XemsMfaOptions } from '../../../plugins/mfa/index.js'
import { setCookieToken } from '../../helpers.js'
import { SoftAuthenticator } from '../../helpers/soft-authenticator.js'
import { buildMfaApp, enrolAda, post, type MfaApp } from '../../mfa-app.js'

const ORIGIN = 'http://localhost:3000'
const PASSKEYS = { rpId: 'localhost', rpName: 'Example', origins: [ORIGIN] }
const PASSWORD = 'correct horse battery staple'

async function build (mfa: Partial<XemsMfaOptions> = {}, events: SecurityEvent[] = []): Promise<MfaApp> {
  return await buildMfaApp({ mfa: { passkeys: PASSKEYS, ...mfa }, session: { onSecurityEvent: (event) => { events.push(event) } } })
}

/** The token a response set, or the one the request used when it set none. */
const after = (res: LightMyRequestResponse, token: string): string => setCookieToken(res) ?? token

async function signUp (ctx: MfaApp, user = 'ada'): Promise<string> {
  await post(ctx.app, '/register', { user, password: PASSWORD })
  const login = await post(ctx.app, '/login', { user, password: PASSWORD })
  return setCookieToken(login)!
}

/** Registers a passkey on the session `token`; returns the session's token afterwards. */
async function addPasskey (ctx: MfaApp, token: string, auth: SoftAuthenticator, name?: string): Promise<{ token: string, res: LightMyRequestResponse }> {
  const start = await post(ctx.app, '/passkeys/register/start', {}, token)
  if (start.statusCode !== 200) return { token: after(start, token), res: start }
  const response = auth.create(start.json())
  const res = await post(ctx.app, '/passkeys/register/finish', { response, ...(name === undefined ? {} : { name }) }, after(start, token))
  return { token: after(res, after(start, token)), res }
}

/** One authentication ceremony on `token`; `tweak` may change the response. */
async function assert (
  ctx: MfaApp, token: string, auth: SoftAuthenticator, overrides: Parameters<SoftAuthenticator['get']>[1] = {}
): Promise<{ token: string, res: LightMyRequestResponse, response: Record<string, unknown> }> {
  const start = await post(ctx.app, '/passkeys/auth/start', {}, token)
  if (start.statusCode !== 200) throw new Error(`start: ${start.body}`)
  const startToken = after(start, token)
  const response = auth.get(start.json(), overrides)
  const res = await post(ctx.app, '/passkeys/auth/finish', { response }, startToken)
  return { token: after(res, startToken), res, response }
}

t.test('the passkeys option is checked at register, naming the option', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ ...PASSKEYS, rpId: 'https://example.com' }, /passkeys\.rpId/],
    [{ ...PASSKEYS, rpName: '' }, /passkeys\.rpName/],
    [{ ...PASSKEYS, origins: [] }, /passkeys\.origins/],
    [{ ...PASSKEYS, origins: ['http://localhost:3000/'] }, /passkeys\.origins.*no path/],
    [{ ...PASSKEYS, origins: ['https://evil.test'] }, /passkeys\.origins.*not on passkeys\.rpId/],
    [{ rpId: 'example.com', rpName: 'x', origins: ['http://example.com'] }, /passkeys\.origins.*https only/],
    [{ ...PASSKEYS, challengeTtl: '11m' }, /passkeys\.challengeTtl/],
    [{ ...PASSKEYS, maxPerUser: 0 }, /passkeys\.maxPerUser/]
  ]
  for (const [passkeys, message] of cases) {
    const app = Fastify()
    await app.register(xemsSession, { cookie: { secure: false } })
    await t.rejects(async () => {
      await app.register(xemsMfa, { issuer: 'x', users: { load: async () => null, save: async () => {} }, passkeys: passkeys as never })
      await app.ready()
    }, { code: 'FST_XEMS_BAD_OPTION', message }, String(message))
    await app.close().catch(() => {})
  }
  const ok = Fastify()
  await ok.register(xemsSession, { cookie: { secure: false } })
  await ok.register(xemsMfa, { issuer: 'x', users: { load: async () => null, save: async () => {} }, passkeys: { rpId: 'example.com', rpName: 'Example', origins: ['https://example.com', 'https://app.example.com'] } })
  await ok.ready()
  await ok.close()
})

t.test('without the passkeys option the ceremonies refuse, naming the option; passkey methods do not load the library', async (t) => {
  const ctx = await buildMfaApp()
  t.teardown(async () => { await ctx.app.close() })
  const token = await signUp(ctx)
  const res = await post(ctx.app, '/passkeys/register/start', {}, token)
  t.equal(res.statusCode, 500)
  t.match(res.json().message, /option "passkeys"/)
})

t.test('register a first passkey, sign in with password + passkey; the pending token dies; counter and last use recorded', async (t) => {
  const events: SecurityEvent[] = []
  const ctx = await build({}, events)
  t.teardown(async () => { await ctx.app.close() })
  const auth = new SoftAuthenticator({ origin: ORIGIN })
  const first = await signUp(ctx)
  const other = await signUp(ctx) // a second session of ada, ended by the factor change
  const added = await addPasskey(ctx, first, auth, 'Laptop')
  t.equal(added.res.statusCode, 200, added.res.body)
  t.match(
    added.res.json(),
    {
      id: auth.credentials[0]!.id.toString('base64url'), name: 'Laptop', backedUp: false, aaguid: '00000000-0000-0000-0000-000000000000', transports: ['internal'], lastUsedAt: null
    }
  )
  t.notOk('publicKey' in added.res.json(), 'the key is not handed out')
  const stored = ctx.users.get('ada')!.mfa
  t.equal(stored.passkeys!.length, 1)
  t.equal(stored.passkeys![0]!.counter, 1)
  t.equal(stored.passkeyUserHandle, auth.credentials[0]!.userHandle, 'the user handle the authenticator keeps is the record\'s random handle')
  t.equal((await ctx.app.inject({ url: '/me', cookies: { xems: other } })).statusCode, 401, 'other sessions end with a change of factor')
  t.match(events.find((e) => e.type === 'factor-enrolled'), { userId: 'ada', factor: 'passkey' })

  const login = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
  t.same(login.json(), { next: 'passkey', methods: ['passkey'], enrolled: true, remembered: false })
  const pending = setCookieToken(login)!
  const start = await post(ctx.app, '/passkeys/auth/start', {}, pending)
  t.same(start.json().allowCredentials.map((c: { id: string }) => c.id), [auth.credentials[0]!.id.toString('base64url')], 'the pending user\'s passkeys are offered')
  const finish = await post(ctx.app, '/passkeys/auth/finish', { response: auth.get(start.json()) }, after(start, pending))
  t.equal(finish.statusCode, 200, finish.body)
  t.same(finish.json(), { method: 'passkey', ceremony: 'second-factor', userVerified: true, next: 'active' })
  const active = setCookieToken(finish)!
  const me = await ctx.app.inject({ url: '/me', cookies: { xems: active } })
  t.equal(me.json().data.mfaVerifiedAt, ctx.clock.now, 'the second factor is fresh')
  t.equal(me.json().data.name, 'ada', 'data carried from the pending session')
  t.equal((await ctx.app.inject({ url: '/me', cookies: { xems: pending } })).statusCode, 401, 'the pending token is dead')
  t.equal(ctx.users.get('ada')!.mfa.passkeys![0]!.counter, 2)
  t.equal(ctx.users.get('ada')!.mfa.passkeys![0]!.lastUsedAt, ctx.clock.now)
  const list = await ctx.app.inject({ url: '/passkeys', cookies: { xems: setCookieToken(me)! } })
  t.same(list.json().map((p: { name: string }) => p.name), ['Laptop'])
})

t.test('a TOTP user adding a passkey needs a fresh second factor; afterwards either factor completes the sign-in', async (t) => {
  const ctx = await build()
  t.teardown(async () => { await ctx.app.close() })
  const auth = new SoftAuthenticator({ origin: ORIGIN })
  const { secret } = await enrolAda(ctx, PASSWORD)
  const login = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
  const verify = await post(ctx.app, '/mfa/verify', { code: await generateTotp({ secret, at: ctx.clock.now }) }, setCookieToken(login))
  let token = setCookieToken(verify)!
  ctx.clock.advance(11 * 60_000) // past freshFor (10m)
  const stale = await post(ctx.app, '/passkeys/register/start', {}, token)
  t.equal(stale.statusCode, 401)
  t.equal(stale.json().code, 'FST_XEMS_MFA_REQUIRED')
  token = after(stale, token)
  const stepUp = await post(ctx.app, '/mfa/step-up', { code: await generateTotp({ secret, at: ctx.clock.now }) }, token)
  t.equal(stepUp.statusCode, 200)
  const added = await addPasskey(ctx, after(stepUp, token), auth)
  t.equal(added.res.statusCode, 200, added.res.body)
  t.equal(added.res.json().name, 'Passkey 1', 'a default name')

  const again = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
  t.same(again.json(), { next: 'totp', methods: ['totp', 'passkey'], enrolled: true, remembered: false })
  const viaPasskey = await assert(ctx, setCookieToken(again)!, auth)
  t.equal(viaPasskey.res.statusCode, 200)
  t.equal(ctx.users.get('ada')!.mfa.totp!.secret, secret, 'TOTP stays')
})

t.test('step-up: requireFreshMfa accepts a fresh passkey assertion', async (t) => {
  const ctx = await build()
  t.teardown(async () => { await ctx.app.close() })
  const auth = new SoftAuthenticator({ origin: ORIGIN })
  const { token } = await addPasskey(ctx, await signUp(ctx), auth)
  t.equal((await ctx.app.inject({ url: '/sensitive', cookies: { xems: token } })).statusCode, 401, 'registration does not make the session fresh')
  const stepUp = await assert(ctx, token, auth)
  t.same(stepUp.res.json(), { method: 'passkey', ceremony: 'step-up', userVerified: true, next: 'active' })
  const sensitive = await ctx.app.inject({ url: '/sensitive', cookies: { xems: stepUp.token } })
  t.equal(sensitive.statusCode, 200)
  ctx.clock.advance(11 * 60_000)
  t.equal((await ctx.app.inject({ url: '/sensitive', cookies: { xems: after(sensitive, stepUp.token) } })).statusCode, 401, 'and it ages like a code')
})

t.test('failure answers: each with its stable code and status', async (t) => {
  const events: SecurityEvent[] = []
  const ctx = await build({ lockout: { maxFailures: 10 } }, events)
  t.teardown(async () => { await ctx.app.close() })
  const auth = new SoftAuthenticator({ origin: ORIGIN })
  let { token } = await addPasskey(ctx, await signUp(ctx), auth)

  await t.test('wrong origin: 403 FST_XEMS_PASSKEY_ORIGIN', async (t) => {
    const r = await assert(ctx, token, auth, { origin: 'https://evil.test' })
    t.equal(r.res.statusCode, 403)
    t.equal(r.res.json().code, 'FST_XEMS_PASSKEY_ORIGIN')
    token = r.token
  })
  await t.test('replayed challenge: 409 FST_XEMS_PASSKEY_REPLAYED', async (t) => {
    const r = await assert(ctx, token, auth)
    t.equal(r.res.statusCode, 200)
    const replay = await post(ctx.app, '/passkeys/auth/finish', { response: r.response }, r.token)
    t.equal(replay.statusCode, 409)
    t.equal(replay.json().code, 'FST_XEMS_PASSKEY_REPLAYED')
    token = after(replay, r.token)
  })
  await t.test('no challenge, expired challenge, another session\'s challenge: 400 FST_XEMS_PASSKEY_NO_CHALLENGE', async (t) => {
    const none = await post(ctx.app, '/passkeys/auth/finish', { response: auth.get({ challenge: 'bm90LWlzc3VlZA' }) }, token)
    t.equal(none.statusCode, 400)
    t.equal(none.json().code, 'FST_XEMS_PASSKEY_NO_CHALLENGE')
    token = after(none, token)
    const start = await post(ctx.app, '/passkeys/auth/start', {}, token)
    token = after(start, token)
    ctx.clock.advance(2 * 60_000 + 1)
    const expired = await post(ctx.app, '/passkeys/auth/finish', { response: auth.get(start.json()) }, token)
    t.equal(expired.statusCode, 400)
    t.equal(expired.json().code, 'FST_XEMS_PASSKEY_NO_CHALLENGE')
    token = after(expired, token)
    // A challenge is bound to the session that asked for it.
    const otherSession = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
    const otherStart = await post(ctx.app, '/passkeys/auth/start', {}, setCookieToken(otherSession))
    const stolen = await post(ctx.app, '/passkeys/auth/finish', { response: auth.get(otherStart.json()) }, token)
    t.equal(stolen.statusCode, 400)
    t.equal(stolen.json().code, 'FST_XEMS_PASSKEY_NO_CHALLENGE')
    token = after(stolen, token)
  })
  await t.test('an answer of the other ceremony type: 400 FST_XEMS_PASSKEY_CEREMONY; a registration challenge never serves an assertion', async (t) => {
    const r = await assert(ctx, token, auth, { type: 'webauthn.create' })
    t.equal(r.res.statusCode, 400)
    t.equal(r.res.json().code, 'FST_XEMS_PASSKEY_CEREMONY')
    token = r.token
    const up = await assert(ctx, token, auth)
    const regStart = await post(ctx.app, '/passkeys/register/start', {}, up.token)
    t.equal(regStart.statusCode, 200)
    const crossed = await post(ctx.app, '/passkeys/auth/finish', { response: auth.get(regStart.json()) }, after(regStart, up.token))
    t.equal(crossed.statusCode, 400)
    t.equal(crossed.json().code, 'FST_XEMS_PASSKEY_NO_CHALLENGE')
    token = after(crossed, after(regStart, up.token))
  })
  await t.test('unknown credential: 401 FST_XEMS_PASSKEY_UNKNOWN', async (t) => {
    const stranger = new SoftAuthenticator({ origin: ORIGIN })
    const mallory = await signUp(ctx, 'mallory')
    await addPasskey(ctx, mallory, stranger)
    const r = await assert(ctx, token, auth, { credential: stranger.credentials[0]! })
    t.equal(r.res.statusCode, 401)
    t.equal(r.res.json().code, 'FST_XEMS_PASSKEY_UNKNOWN', 'another user\'s passkey')
    token = r.token
  })
  await t.test('bad signature: 401 FST_XEMS_PASSKEY_INVALID; not a response: 400 FST_XEMS_PASSKEY_MALFORMED', async (t) => {
    const start = await post(ctx.app, '/passkeys/auth/start', {}, token)
    token = after(start, token)
    const response = auth.get(start.json()) as { response: { signature: string } }
    const sig = Buffer.from(response.response.signature, 'base64url')
    sig[sig.length - 1]! ^= 1
    response.response.signature = sig.toString('base64url')
    const bad = await post(ctx.app, '/passkeys/auth/finish', { response }, token)
    t.equal(bad.statusCode, 401)
    t.equal(bad.json().code, 'FST_XEMS_PASSKEY_INVALID')
    token = after(bad, token)
    for (const junk of [null, 'x', { response: { clientDataJSON: '!!' } }, { id: 'a', response: { clientDataJSON: Buffer.from('[]').toString('base64url') } }]) {
      const res = await post(ctx.app, '/passkeys/auth/finish', { response: junk }, token)
      t.equal(res.statusCode, 400, JSON.stringify(junk))
      t.equal(res.json().code, 'FST_XEMS_PASSKEY_MALFORMED')
      token = after(res, token)
    }
  })
  await t.test('counter rollback: 401 FST_XEMS_PASSKEY_COUNTER, a security event, the stored counter unchanged', async (t) => {
    const before = ctx.users.get('ada')!.mfa.passkeys![0]!.counter
    const r = await assert(ctx, token, auth, { counter: before - 1 })
    t.equal(r.res.statusCode, 401)
    t.equal(r.res.json().code, 'FST_XEMS_PASSKEY_COUNTER')
    t.match(
      events.filter((e) => e.type === 'passkey-counter-rollback'),
      [{ userId: 'ada', credentialId: auth.credentials[0]!.id.toString('base64url'), stored: before, presented: before - 1 }]
    )
    t.equal(ctx.users.get('ada')!.mfa.passkeys![0]!.counter, before)
    token = r.token
    const same = await assert(ctx, token, auth, { counter: before })
    t.equal(same.res.json().code, 'FST_XEMS_PASSKEY_COUNTER', 'an equal counter is refused too')
    token = same.token
    const ok = await assert(ctx, token, auth, { counter: before + 5 })
    t.equal(ok.res.statusCode, 200, 'a counter moving forward is accepted')
  })
  t.notOk(ctx.logs.some((line) => line.includes(auth.credentials[0]!.userHandle)), 'no user handle in the logs')
})

t.test('a counter-less authenticator (always 0) is accepted', async (t) => {
  const ctx = await build()
  t.teardown(async () => { await ctx.app.close() })
  const auth = new SoftAuthenticator({ origin: ORIGIN, counterStep: 0 })
  const { token } = await addPasskey(ctx, await signUp(ctx), auth)
  const first = await assert(ctx, token, auth)
  t.equal(first.res.statusCode, 200)
  t.equal((await assert(ctx, first.token, auth)).res.statusCode, 200)
})

t.test('parallel assertions on one pending session: exactly one promotion wins', async (t) => {
  const ctx = await build()
  t.teardown(async () => { await ctx.app.close() })
  const auth = new SoftAuthenticator({ origin: ORIGIN })
  await addPasskey(ctx, await signUp(ctx), auth)
  const login = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
  const start = await post(ctx.app, '/passkeys/auth/start', {}, setCookieToken(login))
  const pending = setCookieToken(start)!
  const response = auth.get(start.json())
  const results = await Promise.all(Array.from({ length: 200 }, async () => await post(ctx.app, '/passkeys/auth/finish', { response }, pending)))
  t.equal(results.filter((r) => r.statusCode === 200).length, 1, 'one winner')
  t.ok(
    results.every((r) => r.statusCode === 200 || ['FST_XEMS_PASSKEY_REPLAYED', 'FST_XEMS_PASSKEY_NO_CHALLENGE', 'FST_XEMS_NO_SESSION'].includes(r.json().code)),
    'the others are refused as replays'
  )
  t.equal((await ctx.app.xems.listUserSessions('ada')).filter((s) => s.sandbox === 'auth-active').length, 2, 'the registering session and exactly one new one')
})

t.test('a passkey and a TOTP code racing on one pending session: one promotion', async (t) => {
  const ctx = await build()
  t.teardown(async () => { await ctx.app.close() })
  const auth = new SoftAuthenticator({ origin: ORIGIN })
  const { secret } = await enrolAda(ctx, PASSWORD)
  const login = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
  const verify = await post(ctx.app, '/mfa/verify', { code: await generateTotp({ secret, at: ctx.clock.now }) }, setCookieToken(login))
  await addPasskey(ctx, setCookieToken(verify)!, auth)
  ctx.clock.advance(30_000)
  const again = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
  const start = await post(ctx.app, '/passkeys/auth/start', {}, setCookieToken(again))
  const pending = setCookieToken(start)!
  const [a, b] = await Promise.all([
    post(ctx.app, '/passkeys/auth/finish', { response: auth.get(start.json()) }, pending),
    post(ctx.app, '/mfa/verify', { code: await generateTotp({ secret, at: ctx.clock.now }) }, pending)
  ])
  t.equal([a!, b!].filter((r) => r.statusCode === 200).length, 1, `one of ${a!.statusCode}/${b!.statusCode}`)
})

t.test('attempts and lockout are shared with TOTP', async (t) => {
  const ctx = await build({ maxAttempts: 3 })
  t.teardown(async () => { await ctx.app.close() })
  const auth = new SoftAuthenticator({ origin: ORIGIN })
  const { secret } = await enrolAda(ctx, PASSWORD)
  const login = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
  const verify = await post(ctx.app, '/mfa/verify', { code: await generateTotp({ secret, at: ctx.clock.now }) }, setCookieToken(login))
  await addPasskey(ctx, setCookieToken(verify)!, auth)
  const stranger = new SoftAuthenticator({ origin: ORIGIN })
  stranger.create({ challenge: 'x', rp: { id: 'localhost' }, user: { id: 'eA' } })
  let pending = setCookieToken(await post(ctx.app, '/login', { user: 'ada', password: PASSWORD }))!
  const wrongCode = await post(ctx.app, '/mfa/verify', { code: '000000' }, pending)
  t.match(wrongCode.json().message, /2 more attempts/)
  pending = after(wrongCode, pending)
  const unknown = await assert(ctx, pending, auth, { credential: stranger.credentials[0]! })
  t.equal(unknown.res.json().code, 'FST_XEMS_PASSKEY_UNKNOWN')
  const third = await post(ctx.app, '/mfa/verify', { code: '000000' }, unknown.token)
  t.equal(third.statusCode, 401)
  const fourth = await assert(ctx, after(third, unknown.token), auth)
  t.equal(fourth.res.statusCode, 401)
  t.equal(fourth.res.json().code, 'FST_XEMS_MFA_ATTEMPTS', 'a valid passkey past the pending session\'s attempts is refused')
})

t.test('passwordless: with user verification straight to an active, fresh session; without it one factor', async (t) => {
  const ctx = await build()
  t.teardown(async () => { await ctx.app.close() })
  const auth = new SoftAuthenticator({ origin: ORIGIN })
  await addPasskey(ctx, await signUp(ctx), auth)

  const start = await post(ctx.app, '/passkeys/auth/start', {})
  t.equal(start.statusCode, 200)
  t.equal(start.json().allowCredentials, undefined, 'discoverable: no credential list, no user named')
  const finish = await post(ctx.app, '/passkeys/auth/finish', { response: auth.get(start.json()) }, setCookieToken(start))
  t.same(finish.json(), { method: 'passkey', ceremony: 'passwordless', userVerified: true, next: 'active' })
  const sensitive = await ctx.app.inject({ url: '/sensitive', cookies: { xems: setCookieToken(finish)! } })
  t.equal(sensitive.statusCode, 200, 'a user-verified passkey is multi-factor: the session is fresh')

  // Without user verification and no other factor: signed in, but never fresh.
  auth.userVerification = false
  const s2 = await post(ctx.app, '/passkeys/auth/start', {})
  const f2 = await post(ctx.app, '/passkeys/auth/finish', { response: auth.get(s2.json()) }, setCookieToken(s2))
  t.same(f2.json(), { method: 'passkey', ceremony: 'passwordless', userVerified: false, next: 'active' })
  t.equal((await ctx.app.inject({ url: '/sensitive', cookies: { xems: setCookieToken(f2)! } })).statusCode, 401, 'one factor: never fresh')

  // An unknown user handle.
  const s3 = await post(ctx.app, '/passkeys/auth/start', {})
  const f3 = await post(ctx.app, '/passkeys/auth/finish', { response: auth.get(s3.json(), { userHandle: 'bm9ib2R5' }) }, setCookieToken(s3))
  t.equal(f3.statusCode, 401)
  t.equal(f3.json().code, 'FST_XEMS_PASSKEY_UNKNOWN')
})

t.test('passwordless without user verification for a TOTP user: pending until the code; the same passkey cannot be the second factor', async (t) => {
  const ctx = await build()
  t.teardown(async () => { await ctx.app.close() })
  const auth = new SoftAuthenticator({ origin: ORIGIN, userVerification: false })
  const { secret } = await enrolAda(ctx, PASSWORD)
  const login = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
  const verify = await post(ctx.app, '/mfa/verify', { code: await generateTotp({ secret, at: ctx.clock.now }) }, setCookieToken(login))
  await addPasskey(ctx, setCookieToken(verify)!, auth)
  ctx.clock.advance(30_000)

  const start = await post(ctx.app, '/passkeys/auth/start', {})
  const finish = await post(ctx.app, '/passkeys/auth/finish', { response: auth.get(start.json()) }, setCookieToken(start))
  t.same(finish.json(), { method: 'passkey', ceremony: 'passwordless', userVerified: false, next: 'totp', methods: ['totp'] })
  const pending = setCookieToken(finish)!
  t.equal((await ctx.app.inject({ url: '/me', cookies: { xems: pending } })).statusCode, 401, 'not signed in yet')
  const again = await post(ctx.app, '/passkeys/auth/start', {}, pending)
  t.equal(again.json().code, 'FST_XEMS_PASSKEY_UNKNOWN', 'the passkey that was the first factor is not offered as the second')
  const code = await post(ctx.app, '/mfa/verify', { code: await generateTotp({ secret, at: ctx.clock.now }) }, after(again, pending))
  t.equal(code.statusCode, 200)
  const me = await ctx.app.inject({ url: '/me', cookies: { xems: setCookieToken(code)! } })
  t.equal(me.json().userId, 'ada')
  t.notOk('xemsPasskeyFirstFactor' in me.json().data, 'no internal key in the app\'s data')
})

t.test('removing a passkey needs a fresh second factor, also the last one; then the password alone signs in', async (t) => {
  const events: SecurityEvent[] = []
  const ctx = await build({}, events)
  t.teardown(async () => { await ctx.app.close() })
  const auth = new SoftAuthenticator({ origin: ORIGIN })
  const { token } = await addPasskey(ctx, await signUp(ctx), auth)
  const id = auth.credentials[0]!.id.toString('base64url')
  const stale = await post(ctx.app, '/passkeys/remove', { id }, token)
  t.equal(stale.statusCode, 401)
  t.equal(stale.json().code, 'FST_XEMS_MFA_REQUIRED')
  const up = await assert(ctx, after(stale, token), auth)
  const missing = await post(ctx.app, '/passkeys/remove', { id: 'bm9wZQ' }, up.token)
  t.equal(missing.statusCode, 404)
  t.equal(missing.json().code, 'FST_XEMS_PASSKEY_NOT_FOUND')
  const removed = await post(ctx.app, '/passkeys/remove', { id }, after(missing, up.token))
  t.equal(removed.statusCode, 200)
  t.same(ctx.users.get('ada')!.mfa.passkeys, [])
  t.match(events.find((e) => e.type === 'factor-removed'), { factor: 'passkey' })
  const login = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
  t.equal(login.json().next, 'active')
})

t.test('registration: bad name 400, limit 409, origin checked', async (t) => {
  const ctx = await build({ passkeys: { ...PASSKEYS, maxPerUser: 2 } })
  t.teardown(async () => { await ctx.app.close() })
  const auth = new SoftAuthenticator({ origin: ORIGIN })
  let token = await signUp(ctx)
  const badName = await addPasskey(ctx, token, auth, '\u0000')
  t.equal(badName.res.statusCode, 400)
  t.equal(badName.res.json().code, 'FST_XEMS_PASSKEY_BAD_NAME')
  token = badName.token
  const start = await post(ctx.app, '/passkeys/register/start', {}, token)
  token = after(start, token)
  const phished = await post(ctx.app, '/passkeys/register/finish', { response: auth.create(start.json(), { origin: 'https://evil.test' }) }, token)
  t.equal(phished.statusCode, 403)
  t.equal(phished.json().code, 'FST_XEMS_PASSKEY_ORIGIN')
  token = after(phished, token)
  const one = await addPasskey(ctx, token, auth)
  t.equal(one.res.statusCode, 200)
  const up = await assert(ctx, one.token, auth)
  const two = await addPasskey(ctx, up.token, auth)
  t.equal(two.res.statusCode, 200)
  const up2 = await assert(ctx, two.token, auth)
  const three = await addPasskey(ctx, up2.token, auth)
  t.equal(three.res.statusCode, 409)
  t.equal(three.res.json().code, 'FST_XEMS_PASSKEY_LIMIT')
  t.equal(ctx.users.get('ada')!.mfa.passkeys!.length, 2)
})
