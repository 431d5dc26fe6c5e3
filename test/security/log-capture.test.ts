/**
 * Secrets never reach a log line or an error answer. A full password → TOTP login through xemsMfa,
 * with every failure the plugin knows (wrong password, unknown user, wrong code, replayed code, reuse
 * of a rotated token, lockout, logout) plus enrolment, recovery codes, step-up, a remembered device,
 * the header transport and an encrypted vault, runs with the Fastify logger at level 'trace' writing
 * to a stream that keeps every line. Then every secret the run produced or submitted is searched for in
 * all of it, and in the body of every error response.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { MemoryStore } from '../../lib/store/memory/memory-store.js'
import { generateTotp } from '../../lib/mfa/totp.js'
import { buildMfaApp } from '../mfa-app.js'

t.test('a full MFA login with every kind of failure logs no secret and answers no secret in an error body', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'xems-logcap-'))
  const vaultSecret = randomBytes(32)
  const store = await MemoryStore.open({ persistence: { path: dir, secret: vaultSecret.toString('hex') } })
  const ctx = await buildMfaApp({ logLevel: 'trace', session: { store, gracePeriod: '2s' } })
  const { app, clock, users, logs } = ctx
  t.teardown(async () => {
    await app.close()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  const password = `pw-${randomBytes(12).toString('base64url')}`
  const wrongPasswords = [`pw-${randomBytes(12).toString('base64url')}`, `${password}x`]
  const sessionTokens = new Set<string>()
  const deviceTokens = new Set<string>()
  const codes = new Set<string>()
  const totpSecrets = new Set<string>()
  const recoveryCodes = new Set<string>()
  const responses: LightMyRequestResponse[] = []

  /** Every request goes through here: each token a response carries is remembered. */
  async function call (
    method: 'GET' | 'POST', url: string, payload?: unknown, options: { token?: string, device?: string, header?: string } = {}
  ): Promise<LightMyRequestResponse> {
    const cookies: Record<string, string> = {}
    if (options.token !== undefined) cookies.xems = options.token
    if (options.device !== undefined) cookies.xems_device = options.device
    const response = await app.inject({
      method,
      url,
      cookies,
      ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
      ...(options.header === undefined ? {} : { headers: { 'x-xems-token': options.header } })
    })
    responses.push(response)
    for (const cookie of response.cookies) {
      if (cookie.value === '') continue
      if (cookie.name === 'xems') sessionTokens.add(cookie.value)
      if (cookie.name === 'xems_device') deviceTokens.add(cookie.value)
    }
    const header = response.headers['x-xems-token']
    if (typeof header === 'string') sessionTokens.add(header)
    return response
  }
  const tokenOf = (response: LightMyRequestResponse): string => {
    const value = response.cookies.find((cookie) => cookie.name === 'xems')?.value
    if (value === undefined || value === '') throw new Error(`no token in ${response.statusCode} ${response.body}`)
    return value
  }
  const code = async (secret: string, offset = 0): Promise<string> => {
    const value = await generateTotp({ secret, at: clock.now + offset * 30_000 })
    codes.add(value)
    return value
  }
  /** A well-formed code that is valid at none of the steps in the window. */
  const wrongCode = async (secret: string): Promise<string> => {
    const valid = new Set([
      await generateTotp({ secret, at: clock.now - 30_000 }), await generateTotp({ secret, at: clock.now }), await generateTotp({ secret, at: clock.now + 30_000 })
    ])
    for (let n = 0; ; n++) {
      const candidate = String((n * 142_857 + 271_828) % 1_000_000).padStart(6, '0')
      if (!valid.has(candidate)) {
        codes.add(candidate)
        return candidate
      }
    }
  }

  // Register, sign in without a factor, enrol (one wrong confirmation first), sign out.
  t.equal((await call('POST', '/register', { user: 'ada', password })).statusCode, 200)
  let token = tokenOf(await call('POST', '/login', { user: 'ada', password }))
  const enrol = await call('POST', '/mfa/enrol', {}, { token })
  const secret = enrol.json().secret as string
  totpSecrets.add(secret)
  token = tokenOf(enrol)
  const badConfirm = await call('POST', '/mfa/confirm', { code: await wrongCode(secret) }, { token })
  t.equal(badConfirm.statusCode, 401)
  token = tokenOf(badConfirm)
  const confirm = await call('POST', '/mfa/confirm', { code: await code(secret) }, { token })
  t.equal(confirm.statusCode, 200)
  for (const c of confirm.json().recoveryCodes as string[]) recoveryCodes.add(c)
  token = tokenOf(confirm)
  t.equal((await call('POST', '/logout', {}, { token })).statusCode, 200)
  clock.advance(30_000) // the enrolment code used up its step

  // Wrong password, unknown user.
  for (const wrong of wrongPasswords) t.equal((await call('POST', '/login', { user: 'ada', password: wrong })).statusCode, 401)
  t.equal((await call('POST', '/login', { user: 'nobody', password })).statusCode, 401)

  // Password → pending; a wrong code; the right code, remembering the device.
  let pending = tokenOf(await call('POST', '/login', { user: 'ada', password }))
  const wrong = await call('POST', '/mfa/verify', { code: await wrongCode(secret) }, { token: pending })
  t.equal(wrong.statusCode, 401)
  pending = tokenOf(wrong)
  const accepted = await code(secret)
  const verified = await call('POST', '/mfa/verify', { code: accepted, remember: true }, { token: pending })
  t.equal(verified.statusCode, 200)
  t.equal(deviceTokens.size, 1, 'a device cookie was issued')
  token = tokenOf(verified)

  // The same code again, on a new pending session: a replay.
  const replay = await call('POST', '/mfa/verify', { code: accepted }, { token: tokenOf(await call('POST', '/login', { user: 'ada', password })) })
  t.equal(replay.statusCode, 401)

  // A rotated token replayed after its successor was used and its grace passed: reuse, the session is revoked.
  const rotatedAway = token
  token = tokenOf(await call('GET', '/me', undefined, { token }))
  token = tokenOf(await call('GET', '/me', undefined, { token }))
  clock.advance(3000)
  const reuse = await call('GET', '/me', undefined, { token: rotatedAway })
  t.equal(reuse.statusCode, 401)
  t.equal(reuse.json().code, 'FST_XEMS_TOKEN_REUSED')

  // Lockout: wrong passwords until 429, then the right one is refused too.
  let locked: LightMyRequestResponse | null = null
  for (let i = 0; i < 12 && locked === null; i++) {
    const attempt = await call('POST', '/login', { user: 'ada', password: wrongPasswords[i % 2]! })
    if (attempt.statusCode === 429) locked = attempt
  }
  t.ok(locked, 'the user got locked')
  t.equal((await call('POST', '/login', { user: 'ada', password })).statusCode, 429)
  clock.advance(15 * 60_000)

  // After the lock: a recovery code, step-up, new recovery codes, a remembered device, logout.
  const recovery = [...recoveryCodes][0]!
  const recovered = await call('POST', '/mfa/verify', { code: recovery }, { token: tokenOf(await call('POST', '/login', { user: 'ada', password })) })
  t.equal(recovered.statusCode, 200)
  token = tokenOf(recovered)
  const usedRecovery = await call('POST', '/mfa/verify', { code: recovery }, { token: tokenOf(await call('POST', '/login', { user: 'ada', password })) })
  t.equal(usedRecovery.statusCode, 401, 'a used recovery code is refused')
  clock.advance(11 * 60_000)
  const stale = await call('GET', '/sensitive', undefined, { token })
  t.equal(stale.statusCode, 401)
  token = tokenOf(stale)
  const badStepUp = await call('POST', '/mfa/step-up', { code: await wrongCode(secret) }, { token })
  t.equal(badStepUp.statusCode, 401)
  token = tokenOf(badStepUp)
  const stepUp = await call('POST', '/mfa/step-up', { code: await code(secret) }, { token })
  t.equal(stepUp.statusCode, 200)
  token = tokenOf(stepUp)
  const regenerated = await call('POST', '/mfa/recovery-codes', {}, { token })
  t.equal(regenerated.statusCode, 200)
  for (const c of regenerated.json().codes as string[]) recoveryCodes.add(c)
  token = tokenOf(regenerated)
  t.equal((await call('POST', '/logout', {}, { token })).statusCode, 200)
  const remembered = await call('POST', '/login', { user: 'ada', password }, { device: [...deviceTokens][0]! })
  t.same(remembered.json(), { next: 'active', enrolled: true, remembered: true })
  t.equal((await call('POST', '/logout', {}, { token: tokenOf(remembered) })).statusCode, 200)

  // A header client: password and code by header transport, then a replayed header token and logout.
  clock.advance(30_000)
  const headerLogin = await call('POST', '/login', { user: 'ada', password }, { header: '' })
  const headerPending = headerLogin.headers['x-xems-token'] as string
  const headerVerified = await call('POST', '/mfa/verify', { code: await code(secret) }, { header: headerPending })
  t.equal(headerVerified.statusCode, 200)
  const headerToken = headerVerified.headers['x-xems-token'] as string
  t.equal((await call('GET', '/me', undefined, { header: headerPending })).statusCode, 401, 'the pending header token is dead')
  t.equal((await call('POST', '/logout', {}, { header: headerToken })).statusCode, 200)
  t.equal((await call('GET', '/me', undefined, { header: headerToken })).statusCode, 401)

  // ---- the search ------------------------------------------------------------------------------
  const text = logs.join('')
  const events = logs.map((line) => JSON.parse(line) as { xems?: string, msg?: string })
  t.ok(logs.length > 100, `${logs.length} log lines to search`)
  for (const event of [
    'session-created', 'session-rotated', 'session-migrated', 'session-destroyed', 'token-reuse', 'auth-failure', 'totp-replay', 'user-locked', 'mfa-enrolled',
    'recovery-codes-regenerated', 'user-revoked'
  ]) {
    t.ok(events.some((entry) => entry.xems === event), `the ${event} event is logged`)
  }
  t.ok(events.some((entry) => entry.msg === 'incoming request'), 'trace-level request logs are in')
  t.ok(text.includes('"userId":"ada"'), 'the search can find what is logged (the user id is)')

  t.ok(sessionTokens.size >= 20, `${sessionTokens.size} session tokens issued`)
  t.ok(codes.size >= 5, `${codes.size} TOTP codes submitted`)
  t.equal(recoveryCodes.size, 20)
  const hashes = [users.get('ada')!.passwordHash, ...(users.get('ada')!.mfa.recoveryCodes ?? []).filter((h): h is string => h !== null)]
  const secrets: Array<[string, string]> = [
    ...[...sessionTokens].map((value): [string, string] => ['a session token', value]),
    ...[...deviceTokens].map((value): [string, string] => ['the device-cookie token', value]),
    ...[...totpSecrets].map((value): [string, string] => ['the TOTP secret', value]),
    ['the password', password],
    ...wrongPasswords.map((value): [string, string] => ['a wrong password', value]),
    ...[...recoveryCodes].flatMap((value): Array<[string, string]> => [['a recovery code', value], ['a recovery code without dashes', value.replace(/-/g, '')]]),
    ...hashes.map((value): [string, string] => ['an argon2 hash', value]),
    ['the 32-byte vault secret (hex)', vaultSecret.toString('hex')],
    ['the 32-byte vault secret (base64)', vaultSecret.toString('base64')],
    ['the 32-byte vault secret (base64url)', vaultSecret.toString('base64url')],
    ['the 32-byte vault secret (latin1)', vaultSecret.toString('latin1')]
  ]
  const errorBodies = responses.filter((r) => r.statusCode >= 400).map((r) => r.body)
  t.ok(errorBodies.length >= 15, `${errorBodies.length} error responses to search`)
  const allBodies = responses.map((r) => r.body).join('\n')

  const leaks: string[] = []
  for (const [what, value] of secrets) {
    if (text.includes(value)) leaks.push(`${what} in the logs`)
    if (errorBodies.some((body) => body.includes(value))) leaks.push(`${what} in an error body`)
  }
  // A 6-digit code could occur inside a longer number (a timestamp): only a free-standing one counts.
  for (const value of codes) {
    const alone = new RegExp(`(?<![0-9])${value}(?![0-9])`)
    if (alone.test(text)) leaks.push(`TOTP code ${value} in the logs`)
    if (errorBodies.some((body) => alone.test(body))) leaks.push(`TOTP code ${value} in an error body`)
  }
  for (const value of [...sessionTokens, ...deviceTokens]) {
    if (allBodies.includes(value)) leaks.push('a token in a response body')
  }
  t.same(leaks, [], 'no secret anywhere in the logs or the error bodies; no token in any body')
})
