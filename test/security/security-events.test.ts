/**
 * Issue 14: the security events of the MFA flow (factor enrolled / removed, recovery codes
 * regenerated, lockout, new device) and the sign-in method in the device record. No event carries a
 * token, a code, a secret or a password.
 */
import t from 'tap'
import { generateTotp } from '../../lib/mfa/totp.js'
import type { SecurityEvent } from '../../lib/security-events.js'
import { setCookieToken } from '../helpers.js'
import { buildMfaApp, enrolAda, post } from '../mfa-app.js'

const PASSWORD = 'correct horse battery staple'

t.test('MFA flow: events for enrolment, new codes, removal, lockout; the sign-in method is recorded', async (t) => {
  const events: SecurityEvent[] = []
  const ctx = await buildMfaApp({ session: { onSecurityEvent: (event) => { events.push(event) } }, mfa: { lockout: { maxFailures: 3, window: '15m' } } })
  t.teardown(async () => { await ctx.app.close() })
  const { secret, recoveryCodes } = await enrolAda(ctx, PASSWORD)
  t.match(events.find((e) => e.type === 'factor-enrolled'), { userId: 'ada', factor: 'totp' })
  t.match(events.filter((e) => e.type === 'new-device'), [{ userId: 'ada', device: { signIn: 'password' } }], 'the first sign-in (no factor yet) was a new device')

  const pending = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
  t.equal(pending.json().next, 'totp')
  const code = await generateTotp({ secret, at: ctx.clock.now })
  const active = await post(ctx.app, '/mfa/verify', { code }, setCookieToken(pending))
  t.equal(active.statusCode, 200)
  const sessions = await ctx.app.xems.listUserSessions('ada')
  t.ok(sessions.some((s) => s.sandbox === 'auth-active' && s.device?.signIn === 'totp'), 'the code step records totp')
  const token = setCookieToken(active)!

  const pending2 = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
  const viaRecovery = await post(ctx.app, '/mfa/verify', { code: recoveryCodes[0] }, setCookieToken(pending2))
  t.equal(viaRecovery.statusCode, 200)
  t.ok((await ctx.app.xems.listUserSessions('ada')).some((s) => s.device?.signIn === 'recovery-code'), 'a recovery code is recorded as such')

  const codes = await post(ctx.app, '/mfa/recovery-codes', {}, token)
  t.equal(codes.statusCode, 200)
  t.match(events.find((e) => e.type === 'recovery-codes-regenerated'), { userId: 'ada' })
  const newCodes = codes.json().codes as string[]
  const off = await post(ctx.app, '/mfa/disable', {}, setCookieToken(codes) ?? token)
  t.equal(off.statusCode, 200)
  t.match(events.find((e) => e.type === 'factor-removed'), { userId: 'ada', factor: 'totp' })
  t.equal(events.filter((e) => e.type === 'user-revoked').length, 2, 'enrolment and removal signed the other sessions out (new codes do not)')

  for (let i = 0; i < 5; i++) await post(ctx.app, '/login', { user: 'ada', password: 'wrong password' })
  const lockouts = events.filter((e) => e.type === 'lockout')
  t.equal(lockouts.length, 1, 'one lockout event per lock')
  t.match(lockouts[0], { userId: 'ada', retryAfter: Number })
  for (let i = 0; i < 5; i++) await post(ctx.app, '/login', { user: 'nobody', password: 'wrong password' })
  t.equal(events.filter((e) => e.type === 'lockout').length, 1, 'names that are not accounts raise none')

  const text = JSON.stringify(events)
  for (const secretText of [secret, code, PASSWORD, ...recoveryCodes, ...newCodes, token, token.split('.')[1]!]) {
    t.notOk(text.includes(secretText), 'no secret, code, password or token in any event')
  }
})
