/**
 * Regression tests for weaknesses found during the security review (docs/security.md, findings), all
 * fixed: each test failed before its fix.
 */
import t from 'tap'
import { generateTotp } from '../../lib/mfa/totp.js'
import { setCookieToken } from '../helpers.js'
import { buildMfaApp, enrolAda, post, type MfaApp } from '../mfa-app.js'

const PASSWORD = 'correct horse battery staple'

async function enrolled (ctx: MfaApp): Promise<string> {
  return (await enrolAda(ctx, PASSWORD)).secret
}

t.test('a remembered device skips the TOTP step but is not a fresh second factor for step-up', async (t) => {
  const ctx = await buildMfaApp()
  const { app, clock } = ctx
  t.teardown(async () => { await app.close() })
  const secret = await enrolled(ctx)
  const pending = await post(app, '/login', { user: 'ada', password: PASSWORD })
  const verified = await post(app, '/mfa/verify', { code: await generateTotp({ secret, at: clock.now }), remember: true }, setCookieToken(pending))
  const device = verified.cookies.find((cookie) => cookie.name === 'xems_device')!.value
  clock.advance(60 * 60_000)

  // Someone with the password and the device cookie (a shared or stolen computer), an hour later.
  const remembered = await post(app, '/login', { user: 'ada', password: PASSWORD }, undefined, { xems_device: device })
  t.same(remembered.json(), { next: 'active', enrolled: true, remembered: true }, 'the TOTP step is skipped, as documented')
  const sensitive = await app.inject({ url: '/sensitive', cookies: { xems: setCookieToken(remembered)! } })
  t.equal(sensitive.statusCode, 401, 'requireFreshMfa asks for a code')
  const disable = await post(app, '/mfa/disable', {}, setCookieToken(sensitive))
  t.equal(disable.statusCode, 401, 'disabling MFA needs a code')
  t.not(ctx.users.get('ada')!.mfa.totp, null, 'the factor is still there')
})

t.test('the password step of a locked user answers 429 with Retry-After, as docs/mfa.md says', async (t) => {
  const ctx = await buildMfaApp()
  const { app } = ctx
  t.teardown(async () => { await app.close() })
  await enrolled(ctx)
  for (let i = 0; i < 10; i++) await post(app, '/login', { user: 'ada', password: 'wrong' })
  const locked = await post(app, '/login', { user: 'ada', password: PASSWORD })
  t.equal(locked.statusCode, 429)
  t.equal(locked.json().code, 'FST_XEMS_MFA_LOCKED')
  t.ok(Number(locked.headers['retry-after']) > 0, 'Retry-After is set')
})

t.test('a locked name answers like a locked unknown name: no account enumeration by lockout', async (t) => {
  const ctx = await buildMfaApp()
  const { app } = ctx
  t.teardown(async () => { await app.close() })
  await enrolled(ctx)
  for (const user of ['ada', 'nobody']) {
    for (let i = 0; i < 10; i++) t.equal((await post(app, '/login', { user, password: 'wrong' })).statusCode, 401)
  }
  const known = await post(app, '/login', { user: 'ada', password: 'wrong' })
  const unknown = await post(app, '/login', { user: 'nobody', password: 'wrong' })
  t.equal(known.statusCode, 429)
  t.equal(unknown.statusCode, 429, 'an unknown name locks alike')
  t.same({ ...known.json() }, { ...unknown.json() }, 'the same answer')
  t.equal(known.headers['retry-after'], unknown.headers['retry-after'])
})
