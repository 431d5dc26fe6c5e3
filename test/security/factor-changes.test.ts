/**
 * Issue 12, items 2 and 3: changing or removing a second factor.
 *
 * Item 2: with only a stolen active session cookie (no password, no authenticator), or from a login
 * with the password and a remembered device (not a fresh second factor), a thief could enrol their own
 * authenticator, receive ten recovery codes, end the victim's other sessions, then pass requireFreshMfa
 * and disable MFA. Now re-enrolment, disable and new recovery codes need a second factor verified
 * within `freshFor`, checked by the plugin itself (the routes below have no guard of their own), and
 * enrolment never makes a session fresh.
 *
 * Item 3: the "recovery code used" claim was keyed by the code's position, so it outlived the codes:
 * after regenerating (or re-enrolling) the new code at a used position was refused.
 */
import t from 'tap'
import { generateTotp } from '../../lib/mfa/totp.js'
import { setCookieToken } from '../helpers.js'
import { buildMfaApp, enrolAda, post, type MfaApp } from '../mfa-app.js'

const PASSWORD = 'correct horse battery staple'

/** The test app plus routes that call the plugin without any route guard. */
async function appWithUnguardedRoutes (): Promise<MfaApp> {
  const ctx = await buildMfaApp({ mfa: { rememberDevice: { secure: false } } })
  ctx.app.post('/raw/disable', async (request) => { await ctx.mfa.disable(request); return { ok: true } })
  ctx.app.post('/raw/recovery-codes', async (request) => ({ codes: await ctx.mfa.regenerateRecoveryCodes(request) }))
  ctx.app.get('/raw/sessions', async () => ({ count: (await ctx.app.xems.listUserSessions('ada')).length }))
  return ctx
}

/** ada with a TOTP factor; returns its secret, its recovery codes and a session verified with a code just now. */
async function enrolled (ctx: MfaApp): Promise<{ secret: string, codes: string[], fresh: string }> {
  const { app, clock } = ctx
  const { secret, recoveryCodes } = await enrolAda(ctx, PASSWORD)
  const pending = await post(app, '/login', { user: 'ada', password: PASSWORD })
  const verified = await post(app, '/mfa/verify', { code: await generateTotp({ secret, at: clock.now }), remember: true }, setCookieToken(pending))
  if (verified.statusCode !== 200) throw new Error(verified.body)
  clock.advance(30_000)
  return { secret, codes: recoveryCodes, fresh: setCookieToken(verified)! }
}

t.test('a stolen active session (no fresh second factor) cannot re-enrol, disable or regenerate codes', async (t) => {
  const ctx = await appWithUnguardedRoutes()
  const { app, clock, users } = ctx
  t.teardown(async () => { await app.close() })
  const { fresh } = await enrolled(ctx)
  const before = structuredClone(users.get('ada')!.mfa)
  // The thief's copy of the cookie, used after the verification went stale (11 minutes later).
  clock.advance(11 * 60_000)
  let stolen = fresh
  const enrol = await post(app, '/mfa/enrol', {}, stolen)
  t.equal(enrol.statusCode, 401, 're-enrolment refused')
  t.equal(enrol.json().code, 'FST_XEMS_MFA_REQUIRED')
  t.notOk('secret' in enrol.json(), 'no secret handed out')
  stolen = setCookieToken(enrol) ?? stolen
  const disable = await post(app, '/raw/disable', {}, stolen)
  t.equal(disable.statusCode, 401, 'disable refused, even on a route without requireFreshMfa')
  t.equal(disable.json().code, 'FST_XEMS_MFA_REQUIRED')
  stolen = setCookieToken(disable) ?? stolen
  const codes = await post(app, '/raw/recovery-codes', {}, stolen)
  t.equal(codes.statusCode, 401, 'new recovery codes refused')
  t.equal(codes.json().code, 'FST_XEMS_MFA_REQUIRED')
  t.same(users.get('ada')!.mfa, before, 'the factor and the recovery codes are untouched')
})

t.test('a login with the password and a remembered device cannot re-enrol, reach requireFreshMfa, or disable MFA', async (t) => {
  const ctx = await appWithUnguardedRoutes()
  const { app, users } = ctx
  t.teardown(async () => { await app.close() })
  await enrolled(ctx)
  const users0 = structuredClone(users.get('ada')!.mfa)
  const deviceCookie = await rememberedDevice(ctx)
  const remembered = await post(app, '/login', { user: 'ada', password: PASSWORD }, undefined, { xems_device: deviceCookie })
  t.same(remembered.json(), { next: 'active', enrolled: true, remembered: true }, 'the device skips the code step')
  let token = setCookieToken(remembered)!
  const enrol = await post(app, '/mfa/enrol', {}, token)
  t.equal(enrol.statusCode, 401, 're-enrolment needs a code')
  t.equal(enrol.json().code, 'FST_XEMS_MFA_REQUIRED')
  token = setCookieToken(enrol) ?? token
  const sensitive = await app.inject({ url: '/sensitive', cookies: { xems: token } })
  t.equal(sensitive.statusCode, 401, 'requireFreshMfa still asks for a code')
  token = setCookieToken(sensitive) ?? token
  const disable = await post(app, '/raw/disable', {}, token)
  t.equal(disable.statusCode, 401, 'disable needs a code')
  t.same(users.get('ada')!.mfa, users0, 'nothing changed')
})

/** A remembered device for ada: a code login with remember: true; returns the device cookie. */
async function rememberedDevice (ctx: MfaApp): Promise<string> {
  const { app, clock, users } = ctx
  const secret = users.get('ada')!.mfa.totp!.secret
  clock.advance(30_000)
  const pending = await post(app, '/login', { user: 'ada', password: PASSWORD })
  const verified = await post(app, '/mfa/verify', { code: await generateTotp({ secret, at: clock.now }), remember: true }, setCookieToken(pending))
  const cookie = verified.cookies.find((c) => c.name === 'xems_device')
  if (cookie === undefined) throw new Error('no device cookie')
  return cookie.value
}

t.test('enrolment never makes a session fresh; with a fresh second factor, a factor change works and ends freshness', async (t) => {
  const ctx = await appWithUnguardedRoutes()
  const { app, clock, users } = ctx
  t.teardown(async () => { await app.close() })
  await post(app, '/register', { user: 'ada', password: PASSWORD })
  const login = await post(app, '/login', { user: 'ada', password: PASSWORD })
  const enrol = await post(app, '/mfa/enrol', {}, setCookieToken(login))
  t.equal(enrol.statusCode, 200, 'a first enrolment needs no second factor (there is none yet)')
  const secret = enrol.json().secret as string
  const confirm = await post(app, '/mfa/confirm', { code: await generateTotp({ secret, at: clock.now }) }, setCookieToken(enrol))
  t.equal(confirm.statusCode, 200)
  let token = setCookieToken(confirm)!
  const sensitive = await app.inject({ url: '/sensitive', cookies: { xems: token } })
  t.equal(sensitive.statusCode, 401, 'the enrolling session is not fresh: enrolment is no verification of an existing factor')
  token = setCookieToken(sensitive) ?? token
  const codes = await post(app, '/raw/recovery-codes', {}, token)
  t.equal(codes.statusCode, 401)
  token = setCookieToken(codes) ?? token
  clock.advance(30_000)
  const stepUp = await post(app, '/mfa/step-up', { code: await generateTotp({ secret, at: clock.now }) }, token)
  t.equal(stepUp.statusCode, 200)
  token = setCookieToken(stepUp)!
  const again = await post(app, '/mfa/enrol', {}, token)
  t.equal(again.statusCode, 200, 'a fresh second factor allows re-enrolment')
  const second = again.json().secret as string
  clock.advance(30_000)
  const replaced = await post(app, '/mfa/confirm', { code: await generateTotp({ secret: second, at: clock.now }) }, setCookieToken(again))
  t.equal(replaced.statusCode, 200)
  t.equal(users.get('ada')!.mfa.totp!.secret, second, 'the factor is replaced')
  token = setCookieToken(replaced)!
  const after = await post(app, '/raw/disable', {}, token)
  t.equal(after.statusCode, 401, 'the factor change ended freshness: disabling needs a code of the new factor')
  token = setCookieToken(after) ?? token
  clock.advance(30_000)
  const stepUp2 = await post(app, '/mfa/step-up', { code: await generateTotp({ secret: second, at: clock.now }) }, token)
  t.equal(stepUp2.statusCode, 200)
  const disabled = await post(app, '/raw/disable', {}, setCookieToken(stepUp2))
  t.equal(disabled.statusCode, 200, 'with a fresh code of the current factor, disabling works')
  t.equal(users.get('ada')!.mfa.totp, null)
})

t.test('regenerated recovery codes work, also at positions of used ones; so do those of a re-enrolment', async (t) => {
  const ctx = await appWithUnguardedRoutes()
  const { app, clock, users } = ctx
  t.teardown(async () => { await app.close() })
  const { secret, codes } = await enrolled(ctx)
  // Use nine of the ten codes.
  let session = ''
  for (let i = 0; i < 9; i++) {
    const pending = await app.xems.createSession('otp-pending', {}, { userId: 'ada', ttl: '15m' })
    const used = await post(app, '/mfa/verify', { code: codes[i] }, pending)
    t.equal(used.statusCode, 200, `old code #${i} works once`)
    session = setCookieToken(used)!
  }
  const fresh = await post(app, '/raw/recovery-codes', {}, session)
  t.equal(fresh.statusCode, 200, 'the recovery-code login is a fresh second factor')
  const newCodes = fresh.json().codes as string[]
  let working = 0
  for (const [i, code] of newCodes.entries()) {
    const pending = await app.xems.createSession('otp-pending', {}, { userId: 'ada', ttl: '15m' })
    const r = await post(app, '/mfa/verify', { code }, pending)
    if (r.statusCode === 200) working++
    else t.fail(`new code #${i} refused: ${r.body}`)
    session = setCookieToken(r) ?? session
  }
  t.equal(working, 10, 'all ten new codes work (before: only the one at the unused position)')

  // Re-enrolment issues codes too: a fresh session, a new secret, and its codes work at every position.
  clock.advance(30_000)
  const pending = await post(app, '/login', { user: 'ada', password: PASSWORD })
  const verified = await post(app, '/mfa/verify', { code: await generateTotp({ secret, at: clock.now }) }, setCookieToken(pending))
  const enrol = await post(app, '/mfa/enrol', {}, setCookieToken(verified))
  clock.advance(30_000)
  const confirm = await post(app, '/mfa/confirm', { code: await generateTotp({ secret: enrol.json().secret, at: clock.now }) }, setCookieToken(enrol))
  t.equal(confirm.statusCode, 200)
  const third = confirm.json().recoveryCodes as string[]
  const first = await post(app, '/mfa/verify', { code: third[0] }, await app.xems.createSession('otp-pending', {}, { userId: 'ada', ttl: '15m' }))
  t.equal(first.statusCode, 200, 'code #0 of a re-enrolment works')
  t.equal(users.get('ada')!.mfa.recoveryCodes!.filter((hash) => hash !== null).length, 9)
})
