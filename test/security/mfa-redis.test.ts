/**
 * One-time verifiers and theft detection across processes: two apps (separate ioredis clients,
 * RedisStores and engines, one Redis, one user database) verify in parallel. A TOTP step and a
 * recovery code are accepted once in all, failures on both count toward one lockout, and a token
 * rotated by one instance and replayed on the other after its grace revokes the session everywhere.
 * Without Redis the tests skip, unless CI is set: then they fail.
 */
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import t from 'tap'
import { hashRecoveryCodes } from '../../lib/mfa/recovery-codes.js'
import { RedisStore } from '../../lib/store/redis/redis-store.js'
import { generateTotp, generateTotpSecret } from '../../lib/mfa/totp.js'
import { makeClock } from '../helpers.js'
import { buildMfaApp, post, type MfaApp, type User } from '../mfa-app.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const IN_CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false' && process.env.CI !== '0'

const probe = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 1, retryStrategy: () => null })
probe.on('error', () => {})
const unreachable = await probe.connect().then(() => null, (err: Error) => `Redis is not reachable at ${REDIS_URL} (${err.message})`)
probe.disconnect()

if (unreachable !== null) {
  if (IN_CI) t.fail(`${unreachable}: CI is set, so the cross-instance MFA tests must run (start Redis or set REDIS_URL)`)
  else t.test('MFA across two instances on one Redis', { skip: `${unreachable}: start Redis or set REDIS_URL` }, async () => {})
} else {
  t.test('MFA across two instances on one Redis', async (t) => {
    const prefix = `xems-sec:${randomBytes(6).toString('hex')}:`
    const secret = randomBytes(32)
    const clients = [new Redis(REDIS_URL), new Redis(REDIS_URL)]
    const stores = clients.map((client) => new RedisStore({ client, prefix, secret }))
    const clock = makeClock(Math.floor(Date.now() / 30_000) * 30_000 + 1000)
    const users = new Map<string, User>()
    const apps = await Promise.all(stores.map(async (store) => await buildMfaApp({ clock, users, session: { store, gracePeriod: '2s' } }))) as [MfaApp, MfaApp]
    const [a, b] = apps
    t.teardown(async () => {
      for (const { app } of apps) await app.close()
      for (const store of stores) await store.close()
      const keys = await clients[0]!.keys(`${prefix}*`)
      if (keys.length > 0) await clients[0]!.del(...keys)
      for (const client of clients) await client.quit()
    })
    const totpSecret = generateTotpSecret()
    const recovery = ['abcd-efgh-jkmn', 'pqrs-tuvw-xyz2']
    const hashes = await hashRecoveryCodes(recovery)
    for (const name of ['ada', 'bob', 'eve']) users.set(name, { passwordHash: 'unused', mfa: { totp: { secret: totpSecret, enrolledAt: 0 }, recoveryCodes: [...hashes] } })
    const pendingFor = async (app: MfaApp, userId: string): Promise<string> => await app.app.xems.createSession('otp-pending', {}, { userId, ttl: '15m' })

    t.test('one TOTP code, 20 parallel verifications over both instances: exactly one session', async (t) => {
      const pendings = await Promise.all(Array.from({ length: 20 }, async (_, i) => await pendingFor(i % 2 === 0 ? a : b, 'ada')))
      const code = await generateTotp({ secret: totpSecret, at: clock.now })
      const results = await Promise.all(pendings.map(async (pending, i) => await post((i % 2 === 0 ? a : b).app, '/mfa/verify', { code }, pending)))
      t.equal(results.filter((r) => r.statusCode === 200).length, 1, 'one success')
      // Of the 20 guesses at most 10 are evaluated (the lockout budget): the others are throttled.
      t.ok(
        results.filter((r) => r.statusCode !== 200).every((r) => ['FST_XEMS_MFA_INVALID', 'FST_XEMS_MFA_LOCKED'].includes(r.json().code)),
        'every other one refused (used, or throttled)'
      )
      t.ok([...a.logs, ...b.logs].some((line) => line.includes('totp-replay')), 'the replays are logged')
      t.equal((await a.app.xems.listUserSessions('ada')).filter((s) => s.sandbox === 'auth-active').length, 1, 'one active session in all')
    })

    t.test('one recovery code, 10 parallel uses over both instances: exactly one session', async (t) => {
      const pendings = await Promise.all(Array.from({ length: 10 }, async (_, i) => await pendingFor(i % 2 === 0 ? a : b, 'bob')))
      const results = await Promise.all(pendings.map(async (pending, i) => await post((i % 2 === 0 ? a : b).app, '/mfa/verify', { code: recovery[1] }, pending)))
      t.equal(results.filter((r) => r.statusCode === 200).length, 1, 'one success')
      t.equal(users.get('bob')!.mfa.recoveryCodes!.filter((hash) => hash === null).length, 1, 'the code is marked used')
    })

    t.test('failures on both instances count toward one lockout', async (t) => {
      const window = await Promise.all([-1, 0, 1].map(async (step) => await generateTotp({ secret: totpSecret, at: clock.now + step * 30_000 })))
      const wrongCode = ['000000', '111111', '222222', '333333'].find((candidate) => !window.includes(candidate))!
      for (let i = 0; i < 10; i++) {
        const app = i % 2 === 0 ? a : b
        const wrong = await post(app.app, '/mfa/verify', { code: wrongCode }, await pendingFor(app, 'eve'))
        t.equal(wrong.statusCode, 401)
      }
      const right = await generateTotp({ secret: totpSecret, at: clock.now + 30_000 })
      for (const app of [a, b]) {
        const locked = await post(app.app, '/mfa/verify', { code: right }, await pendingFor(app, 'eve'))
        t.equal(locked.statusCode, 429, 'locked on both instances')
        t.equal(locked.json().code, 'FST_XEMS_MFA_LOCKED')
      }
    })

    t.test('a token rotated on one instance and replayed on the other after grace revokes the session', async (t) => {
      const token = await a.app.xems.createSession('auth-active', {}, { userId: 'ada' })
      const rotated = await a.app.inject({ url: '/me', cookies: { xems: token } })
      t.equal(rotated.statusCode, 200)
      const current = rotated.cookies.find((cookie) => cookie.name === 'xems')!.value
      const next = await b.app.inject({ url: '/me', cookies: { xems: current } })
      t.equal(next.statusCode, 200, 'the new token is used on the other instance')
      clock.advance(10_001)
      const replay = await b.app.inject({ url: '/me', cookies: { xems: token } })
      t.equal(replay.statusCode, 401)
      t.equal(replay.json().code, 'FST_XEMS_TOKEN_REUSED')
      t.ok(b.logs.some((line) => line.includes('token-reuse')), 'the instance that saw it logs it')
      const newest = next.cookies.find((cookie) => cookie.name === 'xems')!.value
      t.equal((await a.app.inject({ url: '/me', cookies: { xems: newest } })).statusCode, 401, 'the current token is dead on the other instance too')
    })
  })
}
