import Fastify, { type LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { xemsSession } from '../../../index.js'
import { xemsMfa, type XemsMfaOptions } from '../../../plugins/mfa/index.js'
import { generateTotp } from '../../../lib/mfa/totp.js'
import { setCookieToken } from '../../helpers.js'
import { buildMfaApp as buildApp, post, type MfaApp } from '../../mfa-app.js'

const buildMfaApp = async (mfa: Partial<XemsMfaOptions> = {}): Promise<MfaApp> => await buildApp({ mfa })

async function enrolledUser (ctx: MfaApp, user = 'ada'): Promise<{ secret: string, recoveryCodes: string[], token: string }> {
  const { app, clock } = ctx
  await post(app, '/register', { user, password: 'correct horse battery staple' })
  const login = await post(app, '/login', { user, password: 'correct horse battery staple' })
  const token = setCookieToken(login)!
  const enrol = await post(app, '/mfa/enrol', {}, token)
  const { secret } = enrol.json()
  const confirm = await post(app, '/mfa/confirm', { code: await generateTotp({ secret, at: clock.now }) }, setCookieToken(enrol))
  if (confirm.statusCode !== 200) throw new Error(`confirm failed ${confirm.body}`)
  clock.advance(30_000) // the enrolment code used up its step
  return { secret, recoveryCodes: confirm.json().recoveryCodes, token: setCookieToken(confirm)! }
}

async function passwordStep (ctx: MfaApp, user = 'ada', cookies: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return await post(ctx.app, '/login', { user, password: 'correct horse battery staple' }, undefined, cookies)
}

t.test('full flow: password → pending → TOTP → active; the pending token dies; pending never passes an active guard', async (t) => {
  const ctx = await buildMfaApp()
  const { app, clock, users } = ctx
  t.teardown(async () => { await app.close() })
  const { secret, recoveryCodes } = await enrolledUser(ctx)
  t.equal(recoveryCodes.length, 10)
  t.ok(users.get('ada')!.mfa.recoveryCodes!.every((hash) => hash!.startsWith('$argon2id$')), 'recovery codes stored as argon2id hashes')
  t.notOk(JSON.stringify(users.get('ada')).includes(recoveryCodes[0]!), 'never in clear')

  const login = await passwordStep(ctx)
  t.same(login.json(), { next: 'totp', enrolled: true, remembered: false })
  const pending = setCookieToken(login)!
  const me = await app.inject({ url: '/me', cookies: { xems: pending } })
  t.equal(me.statusCode, 401, 'a pending session never passes the active guard')
  const current = setCookieToken(me)!

  const wrong = await post(app, '/mfa/verify', { code: '000000' }, current)
  t.equal(wrong.statusCode, 401)
  t.equal(wrong.json().code, 'FST_XEMS_MFA_INVALID')
  t.match(wrong.json().message, /4 more attempts/)

  const ok = await post(app, '/mfa/verify', { code: await generateTotp({ secret, at: clock.now }) }, setCookieToken(wrong))
  t.equal(ok.statusCode, 200)
  t.same(ok.json(), { method: 'totp' })
  const active = setCookieToken(ok)!
  t.equal((await app.inject({ url: '/me', cookies: { xems: pending } })).statusCode, 401, 'the pending token is dead, no grace across sandboxes')
  const meActive = await app.inject({ url: '/me', cookies: { xems: active } })
  t.equal(meActive.statusCode, 200)
  t.equal(meActive.json().userId, 'ada')
  t.equal(meActive.json().data.name, 'ada', 'data carried from the pending session')
  t.equal(meActive.json().data.mfaVerifiedAt, clock.now)
})

t.test('a user without a second factor goes straight to active; a wrong password does not', async (t) => {
  const ctx = await buildMfaApp()
  t.teardown(async () => { await ctx.app.close() })
  await post(ctx.app, '/register', { user: 'bob', password: 'correct horse battery staple' })
  const login = await passwordStep(ctx, 'bob')
  t.same(login.json(), { next: 'active', enrolled: false, remembered: false })
  t.equal((await ctx.app.inject({ url: '/me', cookies: { xems: setCookieToken(login)! } })).statusCode, 200)
  const wrong = await post(ctx.app, '/login', { user: 'bob', password: 'nope' })
  t.equal(wrong.statusCode, 401)
  t.equal(wrong.headers['set-cookie'], undefined)
  const unknown = await post(ctx.app, '/login', { user: 'nobody', password: 'nope' })
  t.equal(unknown.statusCode, 401, 'unknown users get the same answer')
})

t.test('replay: a code whose step was accepted is refused; the next step works; drift within the window only', async (t) => {
  const ctx = await buildMfaApp()
  const { app, clock, logs } = ctx
  t.teardown(async () => { await app.close() })
  const { secret } = await enrolledUser(ctx)
  const code = await generateTotp({ secret, at: clock.now })
  t.equal((await post(app, '/mfa/verify', { code }, setCookieToken(await passwordStep(ctx)))).statusCode, 200)
  const replay = await post(app, '/mfa/verify', { code }, setCookieToken(await passwordStep(ctx)))
  t.equal(replay.statusCode, 401, 'the same code again is refused')
  t.ok(logs.some((line) => line.includes('totp-replay')), 'the replay is logged')
  t.notOk(logs.join('').includes(code), 'the code itself is not logged')

  clock.advance(30_000)
  const previous = await generateTotp({ secret, at: clock.now - 30_000 })
  t.equal(previous, code, 'the previous step is the one already used')
  const nextStep = await generateTotp({ secret, at: clock.now + 30_000 })
  t.equal((await post(app, '/mfa/verify', { code: nextStep }, setCookieToken(await passwordStep(ctx)))).statusCode, 200, 'a code of the next step (drift +1) is accepted')
  const older = await generateTotp({ secret, at: clock.now })
  t.equal((await post(app, '/mfa/verify', { code: older }, setCookieToken(await passwordStep(ctx)))).statusCode, 401, 'a step older than the last accepted one is refused')
  clock.advance(90_000)
  const farAhead = await generateTotp({ secret, at: clock.now + 60_000 })
  t.equal((await post(app, '/mfa/verify', { code: farAhead }, setCookieToken(await passwordStep(ctx)))).statusCode, 401, 'drift +2 is outside the window')
  const farBehind = await generateTotp({ secret, at: clock.now - 60_000 })
  t.equal((await post(app, '/mfa/verify', { code: farBehind }, setCookieToken(await passwordStep(ctx)))).statusCode, 401, 'drift -2 too')
})

t.test('N parallel verifications of one valid code create exactly one session', async (t) => {
  const ctx = await buildMfaApp()
  t.teardown(async () => { await ctx.app.close() })
  const { secret } = await enrolledUser(ctx)
  const pending = setCookieToken(await passwordStep(ctx))!
  const code = await generateTotp({ secret, at: ctx.clock.now })
  const results = await Promise.all(Array.from({ length: 20 }, async () => await post(ctx.app, '/mfa/verify', { code }, pending)))
  t.equal(results.filter((r) => r.statusCode === 200).length, 1)
  t.equal((await ctx.app.xems.listUserSessions('ada')).filter((s) => s.sandbox === 'auth-active').length, 2, 'the enrolment session and exactly one new one')
})

t.test('an expired pending session cannot be verified', async (t) => {
  const ctx = await buildMfaApp({ pendingTtl: '10m' })
  t.teardown(async () => { await ctx.app.close() })
  const { secret } = await enrolledUser(ctx)
  const pending = setCookieToken(await passwordStep(ctx))!
  ctx.clock.advance(10 * 60_000)
  const late = await post(ctx.app, '/mfa/verify', { code: await generateTotp({ secret, at: ctx.clock.now }) }, pending)
  t.equal(late.statusCode, 401)
  t.equal(late.json().code, 'FST_XEMS_MFA_NOT_PENDING')
})

t.test('attempt limit: after the fifth wrong code the pending session accepts no code', async (t) => {
  const ctx = await buildMfaApp()
  t.teardown(async () => { await ctx.app.close() })
  const { secret } = await enrolledUser(ctx)
  let token = setCookieToken(await passwordStep(ctx))!
  for (let i = 1; i <= 5; i++) {
    const wrong = await post(ctx.app, '/mfa/verify', { code: '123456' }, token)
    t.equal(wrong.statusCode, 401)
    token = setCookieToken(wrong) ?? token
    if (i === 5) t.match(wrong.json().message, /sign in again/)
  }
  const right = await post(ctx.app, '/mfa/verify', { code: await generateTotp({ secret, at: ctx.clock.now }) }, token)
  t.equal(right.statusCode, 401, 'even the right code cannot revive it')
  t.equal(right.json().code, 'FST_XEMS_MFA_ATTEMPTS')
  t.equal((await ctx.app.inject({ url: '/me', cookies: { xems: token } })).statusCode, 401, 'and it never became active')
})

t.test('lockout: 10 failures across factors lock the user (429, Retry-After); the window ends it; success resets', async (t) => {
  const ctx = await buildMfaApp({ maxAttempts: 10 })
  const { app, clock } = ctx
  t.teardown(async () => { await app.close() })
  const { secret } = await enrolledUser(ctx)
  for (let i = 0; i < 5; i++) t.equal((await post(app, '/login', { user: 'ada', password: 'wrong' })).statusCode, 401)
  let pending = setCookieToken(await passwordStep(ctx))!
  for (let i = 0; i < 5; i++) {
    const wrong = await post(app, '/mfa/verify', { code: '000000' }, pending)
    pending = setCookieToken(wrong) ?? pending
  }
  const locked = await passwordStep(ctx)
  t.equal(locked.statusCode, 429, 'even the right password is refused now')
  t.equal(locked.json().code, 'FST_XEMS_MFA_LOCKED')
  t.equal(locked.headers['set-cookie'], undefined)
  const blocked = await post(app, '/mfa/verify', { code: await generateTotp({ secret, at: clock.now }) }, pending)
  t.equal(blocked.statusCode, 429)
  t.ok(Number(blocked.headers['retry-after']) > 800, 'Retry-After says how long')
  clock.advance(15 * 60_000)
  const again = await passwordStep(ctx)
  t.equal(again.statusCode, 200, 'the lock ends with its window')
  const verified = await post(app, '/mfa/verify', { code: await generateTotp({ secret, at: clock.now }) }, setCookieToken(again))
  t.equal(verified.statusCode, 200)
  for (let i = 0; i < 9; i++) await post(app, '/login', { user: 'ada', password: 'wrong' })
  t.equal((await passwordStep(ctx)).statusCode, 200, 'the success reset the count: 9 new failures do not lock')
})

t.test('never more than 100 consecutive failures, whatever the windows', async (t) => {
  const ctx = await buildMfaApp({ lockout: { maxFailures: 10, window: '1m', maxConsecutive: 30 } })
  t.teardown(async () => { await ctx.app.close() })
  await post(ctx.app, '/register', { user: 'eve', password: 'correct horse battery staple' })
  let refused = 0
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 10; i++) {
      const r = await post(ctx.app, '/login', { user: 'eve', password: 'guess' })
      if (r.statusCode === 429) refused++
    }
    ctx.clock.advance(60_000)
  }
  t.ok(refused >= 20, `after 30 failures every attempt is refused (${refused} refused)`)
  t.equal((await passwordStep(ctx, 'eve')).statusCode, 429, 'still locked after the short windows passed')
})

t.test('recovery codes: each works once, also under 30 parallel requests', async (t) => {
  const ctx = await buildMfaApp()
  t.teardown(async () => { await ctx.app.close() })
  const { recoveryCodes } = await enrolledUser(ctx)
  const first = await post(ctx.app, '/mfa/verify', { code: recoveryCodes[3]!.toUpperCase() }, setCookieToken(await passwordStep(ctx)))
  t.equal(first.statusCode, 200, 'case does not matter')
  t.same(first.json(), { method: 'recovery', recoveryCodesLeft: 9 })
  t.equal((await post(ctx.app, '/mfa/verify', { code: recoveryCodes[3] }, setCookieToken(await passwordStep(ctx)))).statusCode, 401, 'used twice: refused')
  // 30 pending sessions straight from the engine: 30 password steps would be throttled (10 per window).
  const pendings = await Promise.all(Array.from({ length: 30 }, async () => await ctx.app.xems.createSession('otp-pending', {}, { userId: 'ada', ttl: '15m' })))
  const results = await Promise.all(pendings.map(async (pending) => await post(ctx.app, '/mfa/verify', { code: recoveryCodes[7] }, pending)))
  t.equal(results.filter((r) => r.statusCode === 200).length, 1, 'one of 30 parallel uses succeeds')
  t.ok(results.every((r) => [200, 401, 429].includes(r.statusCode)), 'the others are refused (used, or throttled)')
  t.equal(ctx.users.get('ada')!.mfa.recoveryCodes!.filter((hash) => hash === null).length, 2)
})

t.test('enrolment is stored only after a first valid code; re-enrolment starts unverified', async (t) => {
  const ctx = await buildMfaApp()
  const { app, clock, users } = ctx
  t.teardown(async () => { await app.close() })
  await post(app, '/register', { user: 'ada', password: 'correct horse battery staple' })
  let token = setCookieToken(await passwordStep(ctx))!
  const enrol = await post(app, '/mfa/enrol', {}, token)
  t.equal(enrol.statusCode, 200)
  const { secret, uri, qrSvg } = enrol.json()
  t.match(uri, /^otpauth:\/\/totp\/Example:ada\?secret=[A-Z2-7]{32}&issuer=Example&algorithm=SHA1&digits=6&period=30$/)
  t.match(qrSvg, /^<svg[^>]*>.*<\/svg>$/s, 'a QR code as SVG')
  t.equal(Buffer.from(secret.replace(/=+$/, ''), 'ascii').length >= 32, true, 'secret of at least 160 bits')
  t.same(users.get('ada')!.mfa, {}, 'nothing stored yet')
  token = setCookieToken(enrol)!
  const wrong = await post(app, '/mfa/confirm', { code: '000000' }, token)
  t.equal(wrong.statusCode, 401)
  t.same(users.get('ada')!.mfa, {}, 'still nothing after a wrong code')
  token = setCookieToken(wrong)!
  const right = await post(app, '/mfa/confirm', { code: await generateTotp({ secret, at: clock.now }) }, token)
  t.equal(right.statusCode, 200)
  t.equal(users.get('ada')!.mfa.totp!.secret, secret)
  token = setCookieToken(right)!
  const unverified = await post(app, '/mfa/enrol', {}, token)
  t.equal(unverified.statusCode, 401, 're-enrolment needs a fresh second factor: enrolment itself gives none')
  t.equal(unverified.json().code, 'FST_XEMS_MFA_REQUIRED')
  token = setCookieToken(unverified) ?? token
  const stepUp = await post(app, '/mfa/step-up', { code: await generateTotp({ secret, at: clock.now + 30_000 }) }, token)
  t.equal(stepUp.statusCode, 200)
  token = setCookieToken(stepUp)!
  const again = await post(app, '/mfa/enrol', {}, token)
  const second = again.json().secret
  t.not(second, secret)
  t.equal(users.get('ada')!.mfa.totp!.secret, secret, 're-enrolment does not replace the factor until confirmed')
  const replayedEnrolCode = await post(app, '/mfa/confirm', { code: await generateTotp({ secret: second, at: clock.now }) }, setCookieToken(again))
  t.equal(replayedEnrolCode.statusCode, 401, 'the enrolment step is used up: the same step cannot confirm again')
})

t.test('enrolling a factor ends the user\'s other sessions and gives this one a new token', async (t) => {
  const ctx = await buildMfaApp()
  const { app, clock } = ctx
  t.teardown(async () => { await app.close() })
  await post(app, '/register', { user: 'ada', password: 'correct horse battery staple' })
  const elsewhere = setCookieToken(await passwordStep(ctx))!
  const here = setCookieToken(await passwordStep(ctx))!
  const enrol = await post(app, '/mfa/enrol', {}, here)
  const enrolToken = setCookieToken(enrol)!
  const confirm = await post(app, '/mfa/confirm', { code: await generateTotp({ secret: enrol.json().secret, at: clock.now }) }, enrolToken)
  t.equal(confirm.statusCode, 200)
  t.equal((await app.inject({ url: '/me', cookies: { xems: elsewhere } })).statusCode, 401, 'the other session ended')
  t.equal((await app.inject({ url: '/me', cookies: { xems: enrolToken } })).statusCode, 401, 'the token before the change is dead')
  t.equal((await app.inject({ url: '/me', cookies: { xems: setCookieToken(confirm)! } })).statusCode, 200)
})

t.test('step-up: requireFreshMfa answers 401 FST_XEMS_MFA_REQUIRED when the last MFA is older; a code refreshes it', async (t) => {
  const ctx = await buildMfaApp()
  const { app, clock } = ctx
  t.teardown(async () => { await app.close() })
  const { secret } = await enrolledUser(ctx)
  const verified = await post(app, '/mfa/verify', { code: await generateTotp({ secret, at: clock.now }) }, setCookieToken(await passwordStep(ctx)))
  let token = setCookieToken(verified)!
  const fresh = await app.inject({ url: '/sensitive', cookies: { xems: token } })
  t.equal(fresh.statusCode, 200)
  token = setCookieToken(fresh)!
  clock.advance(11 * 60_000)
  const stale = await app.inject({ url: '/sensitive', cookies: { xems: token } })
  t.equal(stale.statusCode, 401)
  t.equal(stale.json().code, 'FST_XEMS_MFA_REQUIRED')
  token = setCookieToken(stale)!
  const stepUp = await post(app, '/mfa/step-up', { code: await generateTotp({ secret, at: clock.now }) }, token)
  t.equal(stepUp.statusCode, 200)
  token = setCookieToken(stepUp)!
  const again = await app.inject({ url: '/sensitive', cookies: { xems: token } })
  t.equal(again.statusCode, 200)
  token = setCookieToken(again)!
  const codes = await post(app, '/mfa/recovery-codes', {}, token)
  t.equal(codes.json().codes.length, 10, 'a fresh MFA allows regenerating recovery codes')
  token = setCookieToken(codes)!
  const disabled = await post(app, '/mfa/disable', {}, token)
  t.equal(disabled.statusCode, 200)
  t.same(ctx.users.get('ada')!.mfa, { totp: null, recoveryCodes: [] })
  t.same((await passwordStep(ctx)).json(), { next: 'active', enrolled: false, remembered: false })
  const noSession = await app.inject({ url: '/sensitive' })
  t.equal(noSession.statusCode, 401)
  t.equal(noSession.json().code, 'FST_XEMS_NO_SESSION')
})

t.test('remember this device: skips the TOTP step until the user is revoked', async (t) => {
  const ctx = await buildMfaApp()
  const { app, clock } = ctx
  t.teardown(async () => { await app.close() })
  const { secret } = await enrolledUser(ctx)
  const verified = await post(app, '/mfa/verify', { code: await generateTotp({ secret, at: clock.now }), remember: true }, setCookieToken(await passwordStep(ctx)))
  const device = verified.cookies.find((c) => c.name === 'xems_device')!
  t.ok(device, 'a device cookie')
  t.equal(device.httpOnly, true)
  t.equal(device.sameSite, 'Strict')
  const skipped = await passwordStep(ctx, 'ada', { xems_device: device.value })
  t.same(skipped.json(), { next: 'active', enrolled: true, remembered: true })
  t.equal((await app.inject({ url: '/me', cookies: { xems: setCookieToken(skipped)! } })).statusCode, 200)
  t.same((await passwordStep(ctx, 'ada', { xems_device: 'forged' })).json().next, 'totp', 'a forged device cookie does nothing')
  clock.advance(1)
  await post(app, '/revoke/ada', {})
  t.same((await passwordStep(ctx, 'ada', { xems_device: device.value })).json().next, 'totp', 'revoked with the user\'s sessions')
})

t.test('register: xemsMfa needs xemsSession and checks its options', async (t) => {
  const bare = Fastify()
  await t.rejects(async () => { await bare.register(xemsMfa, { issuer: 'X', users: { load: async () => null, save: async () => {} } }); await bare.ready() }, { code: 'FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED', message: /'xems-session' of plugin 'xems-mfa'/ })
  const bad: Array<[Partial<XemsMfaOptions>, RegExp]> = [
    [{ issuer: '' }, /"issuer"/],
    [{ issuer: 'A:B' }, /"issuer"/],
    [{ users: {} as never }, /"users"/],
    [{ pendingTtl: '1h' }, /"pendingTtl" must be at most 15 minutes/],
    [{ maxAttempts: 50 }, /"maxAttempts" must be a whole number from 1 to 10/],
    [{ window: 11 }, /"window"/],
    [{ lockout: { maxFailures: 11 } }, /"lockout.maxFailures"/],
    [{ lockout: { maxConsecutive: 101 } }, /"lockout.maxConsecutive"/],
    [{ rememberDevice: { ttl: '30d' } }, /"rememberDevice.ttl" must be at most 5 days/],
    [{ pendingSandbox: 'auth-active' }, /"pendingSandbox" must differ/],
    [{ totp: { algorithm: 'MD5' as never } }, /"totp.algorithm"/]
  ]
  for (const [options, message] of bad) {
    const app = Fastify()
    await app.register(xemsSession)
    await t.rejects(async () => {
      await app.register(xemsMfa, { issuer: 'X', users: { load: async () => null, save: async () => {} }, ...options })
      await app.ready()
    }, { code: 'FST_XEMS_BAD_OPTION', message })
    await app.close()
  }
})

t.test('a store failing under the lockout counters answers 503, not 500', async (t) => {
  const { MemoryStore } = await import('../../../index.js')
  const inner = new MemoryStore()
  let countersDown = false
  const store = new Proxy(inner, {
    get (target, property, receiver) {
      const value = Reflect.get(target, property, receiver)
      if (property === 'increment' || property === 'resetCounter') {
        return async (...args: unknown[]) => {
          if (countersDown) throw new Error('ECONNRESET')
          return await value.apply(target, args)
        }
      }
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
  const ctx = await buildApp({ session: { store } })
  t.teardown(async () => { await ctx.app.close(); await inner.close() })
  await post(ctx.app, '/register', { user: 'ada', password: 'correct horse battery staple' })
  countersDown = true
  const failed = await post(ctx.app, '/login', { user: 'ada', password: 'wrong' })
  t.equal(failed.statusCode, 503)
  t.equal(failed.json().code, 'FST_XEMS_STORE_UNAVAILABLE')
  t.notMatch(failed.body, /ECONNRESET/)
})
