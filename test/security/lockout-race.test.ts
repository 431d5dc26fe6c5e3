/**
 * Issue 12, item 1: the lockout under an attacker's timing. Hundreds of guesses for one user are sent
 * at once (real parallelism on the event loop; on Redis split over two app instances with their own
 * clients), on MemoryStore, on the vault (MemoryStore with persistence, fsync 'always') and on Redis,
 * and through a store that takes 1–3 ms per call. Each guess is counted before it is evaluated, so:
 * at most `maxFailures` guesses are evaluated per window, the right password or code inside the burst
 * is refused once the budget is spent, nothing answers 5xx, and the lock (the counters, plus the
 * advisory marker) is always written. Then the policy: a burst throttles for one window only, and only
 * 100 evaluated guesses over many windows lock an account (until 5 days after the first, or unlock()).
 * Without Redis the Redis cases skip, unless CI is set: then they fail.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import type { SessionStore } from '../../lib/store/contract.js'
import { MemoryStore } from '../../lib/store/memory/memory-store.js'
import { RedisStore } from '../../lib/store/redis/redis-store.js'
import { generateTotp, generateTotpSecret } from '../../lib/mfa/totp.js'
import { hashPassword } from '../../lib/mfa/password.js'
import { makeClock, setCookieToken } from '../helpers.js'
import { buildMfaApp, post, type MfaApp, type User } from '../mfa-app.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const IN_CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false' && process.env.CI !== '0'
const PASSWORD = 'correct horse battery staple'
const BURST = 300
const RIGHT_AT = 150
const MAX_FAILURES = 10
const MINUTE = 60_000

const probe = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 1, retryStrategy: () => null })
probe.on('error', () => {})
const redisUnreachable = await probe.connect().then(() => null, (err: Error) => `Redis is not reachable at ${REDIS_URL} (${(err as Error).message})`)
probe.disconnect()

/** A store whose every call takes 1 to 3 ms more (a network round trip). */
function slowStore (inner: SessionStore): SessionStore {
  return new Proxy(inner, {
    get (target, property, receiver) {
      const value = Reflect.get(target, property, receiver)
      if (typeof value !== 'function') return value
      if (property === 'close' || property === 'ready') return value.bind(target)
      return async (...args: unknown[]) => {
        await new Promise((resolve) => setTimeout(resolve, 1 + Math.floor(Math.random() * 3)))
        return await value.apply(target, args)
      }
    }
  })
}

interface Backend { name: string, stores: SessionStore[], close: () => Promise<void> }

async function memoryBackend (): Promise<Backend> {
  const store = new MemoryStore()
  return { name: 'MemoryStore', stores: [store], close: async () => { await store.close() } }
}

async function vaultBackend (): Promise<Backend> {
  const dir = await mkdtemp(join(tmpdir(), 'xems-lockout-'))
  const store = await MemoryStore.open({ persistence: { path: dir, secret: randomBytes(32), fsync: 'always' } })
  return { name: 'the vault', stores: [store], close: async () => { await store.close(); await rm(dir, { recursive: true, force: true }) } }
}

async function slowBackend (): Promise<Backend> {
  const store = new MemoryStore()
  return { name: 'a store taking 1–3 ms per call', stores: [slowStore(store)], close: async () => { await store.close() } }
}

async function redisBackend (): Promise<Backend> {
  const prefix = `xems-lockout:${randomBytes(6).toString('hex')}:`
  const secret = randomBytes(32)
  const clients = [new Redis(REDIS_URL), new Redis(REDIS_URL)]
  const stores = clients.map((client) => new RedisStore({ client, prefix, secret }))
  return {
    name: 'Redis (two instances)',
    stores,
    close: async () => {
      for (const store of stores) await store.close()
      const keys = await clients[0]!.keys(`${prefix}*`)
      if (keys.length > 0) await clients[0]!.del(...keys)
      for (const client of clients) await client.quit()
    }
  }
}

/** One app per store of the backend, sharing a clock and a user database (instances of one service). */
async function appsOn (t: Test, backend: Backend, mfa: Record<string, unknown> = {}): Promise<MfaApp[]> {
  const clock = makeClock(Math.floor(Date.now() / 30_000) * 30_000 + 1000)
  const users = new Map<string, User>()
  const apps: MfaApp[] = []
  for (const store of backend.stores) apps.push(await buildMfaApp({ clock, users, session: { store }, mfa }))
  t.teardown(async () => {
    for (const { app } of apps) await app.close()
    await backend.close()
  })
  return apps
}

function tally (responses: LightMyRequestResponse[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const r of responses) {
    const key = r.statusCode === 200 ? '200' : `${r.statusCode} ${String(r.json().code ?? r.json().error)}`
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

const backends: Array<[string, () => Promise<Backend>]> = [
  ['MemoryStore', memoryBackend],
  ['the vault', vaultBackend],
  ['a store taking 1–3 ms per call', slowBackend],
  ['Redis (two instances)', redisBackend]
]

for (const [name, make] of backends) {
  if (name.startsWith('Redis') && redisUnreachable !== null) {
    if (IN_CI) t.fail(`${redisUnreachable}: CI is set, so the Redis lockout race must run`)
    else t.test(`${BURST} parallel password guesses on ${name}`, { skip: redisUnreachable }, async () => {})
    continue
  }

  t.test(`${BURST} parallel password guesses on ${name}: at most ${MAX_FAILURES} evaluated, the right one refused, no 5xx, the lock written`, async (t) => {
    const apps = await appsOn(t, await make())
    const [first] = apps as [MfaApp]
    first.users.set('ada', { passwordHash: await hashPassword(PASSWORD), mfa: {} })
    const guesses = Array.from({ length: BURST }, (_, i) => i === RIGHT_AT ? PASSWORD : `guess-${i}`)
    const responses = await Promise.all(guesses.map(async (password, i) => await post(apps[i % apps.length]!.app, '/login', { user: 'ada', password })))
    const counts = tally(responses)
    t.comment(`${name}: ${JSON.stringify(counts)}`)
    const evaluated = responses.filter((r) => r.statusCode === 401 || r.statusCode === 200).length
    t.ok(evaluated <= MAX_FAILURES, `${evaluated} of ${BURST} guesses evaluated (at most ${MAX_FAILURES})`)
    t.equal(evaluated, MAX_FAILURES, 'and the budget was used, not more')
    t.equal(responses[RIGHT_AT]!.statusCode, 429, 'the right password inside the burst is refused: the budget was spent')
    t.equal(responses.filter((r) => r.statusCode >= 500).length, 0, 'no 5xx')
    t.ok(
      responses.filter((r) => r.statusCode === 429).every((r) => r.json().code === 'FST_XEMS_MFA_LOCKED' && Number(r.headers['retry-after']) > 0),
      'every refusal is 429 FST_XEMS_MFA_LOCKED with Retry-After'
    )
    for (const { app } of apps) {
      const after = await post(app, '/login', { user: 'ada', password: PASSWORD })
      t.equal(after.statusCode, 429, 'locked on every instance after the burst')
    }
    const marker = await first.app.xems.from('xems-mfa').get<number>('locked:ada')
    t.ok(marker !== null && marker > first.clock.now && marker <= first.clock.now + 15 * MINUTE, 'the lock marker is written, for the window and no longer')
    first.clock.advance(15 * MINUTE)
    const later = await post(first.app, '/login', { user: 'ada', password: PASSWORD })
    t.equal(later.statusCode, 200, 'a burst throttles for one window, it does not lock the account for days')
  })
}

if (redisUnreachable !== null) {
  if (IN_CI) t.fail(`${redisUnreachable}: CI is set, so the cross-instance TOTP race must run`)
  else t.test('TOTP guesses over many pending sessions on two instances', { skip: redisUnreachable }, async () => {})
} else {
  t.test(`TOTP: a known password, 60 pending sessions, ${BURST} parallel wrong codes over two instances on one Redis`, async (t) => {
    const apps = await appsOn(t, await redisBackend())
    const [a] = apps as [MfaApp]
    const secret = generateTotpSecret()
    a.users.set('ada', { passwordHash: await hashPassword(PASSWORD), mfa: { totp: { secret, enrolledAt: 0 } } })
    // The attacker knows the password: pending sessions come from password steps (2 here, the rest from
    // the engine, as a stolen pending cookie each: the password budget is not what this case tests).
    const pendings: Array<{ app: FastifyInstance, token: string }> = []
    for (let i = 0; i < 2; i++) pendings.push({ app: apps[i % 2]!.app, token: setCookieToken(await post(apps[i % 2]!.app, '/login', { user: 'ada', password: PASSWORD }))! })
    for (let i = 2; i < 60; i++) pendings.push({ app: apps[i % 2]!.app, token: await apps[i % 2]!.app.xems.createSession('otp-pending', {}, { userId: 'ada', ttl: '15m' }) })
    const window = await Promise.all([-1, 0, 1].map(async (step) => await generateTotp({ secret, at: a.clock.now + step * 30_000 })))
    const right = await generateTotp({ secret, at: a.clock.now })
    let wrong = 0
    const codes = Array.from({ length: BURST }, (_, i) => {
      if (i === BURST - 1) return right
      let code: string
      do code = String(100000 + ((wrong++ * 7919) % 900000)); while (window.includes(code))
      return code
    })
    const responses = await Promise.all(codes.map(async (code, i) => {
      const pending = pendings[i % pendings.length]!
      return await post(pending.app, '/mfa/verify', { code }, pending.token)
    }))
    t.comment(`TOTP on Redis: ${JSON.stringify(tally(responses))}`)
    const evaluated = responses.filter((r) => r.statusCode === 200 || r.json().code === 'FST_XEMS_MFA_INVALID').length
    t.ok(evaluated <= MAX_FAILURES - 2, `${evaluated} codes evaluated: with the 2 password steps, at most ${MAX_FAILURES} guesses in the window`)
    t.not(responses[BURST - 1]!.statusCode, 200, 'the right code at the end of the burst is refused')
    t.equal(responses.filter((r) => r.statusCode === 200).length, 0, 'no session was promoted')
    t.equal(responses.filter((r) => r.statusCode >= 500).length, 0, 'no 5xx')
    t.equal((await a.app.xems.listUserSessions('ada')).filter((s) => s.sandbox === 'auth-active').length, 0, 'no active session')
  })
}

t.test('the default policy: throttling per window; 100 evaluated guesses lock until 5 days after the first; unlock() lifts it', async (t) => {
  const apps = await appsOn(t, await memoryBackend())
  const [{ app, clock, users }] = apps as [MfaApp]
  users.set('ada', { passwordHash: await hashPassword(PASSWORD), mfa: {} })
  const start = clock.now
  const perWindow: number[] = []
  for (let window = 0; window < 12; window++) {
    const burst = await Promise.all(Array.from({ length: 20 }, async () => await post(app, '/login', { user: 'ada', password: 'guess' })))
    t.equal(burst.filter((r) => r.statusCode >= 500).length, 0)
    perWindow.push(burst.filter((r) => r.statusCode === 401).length)
    clock.advance(15 * MINUTE)
  }
  t.same(perWindow, [...Array(10).fill(10), 0, 0], `20 guesses per 15-minute window: ${perWindow.join(', ')} evaluated`)
  t.equal(perWindow.reduce((a, b) => a + b, 0), 100, 'exactly 100 guesses evaluated in all (NIST 800-63B 5.2.2: at most 100 consecutive failures)')
  const locked = await post(app, '/login', { user: 'ada', password: PASSWORD })
  t.equal(locked.statusCode, 429, 'then even the right password is refused')
  const retryAfter = Number(locked.headers['retry-after'])
  t.ok(Math.abs(start + 5 * 86_400_000 - clock.now - retryAfter * 1000) < 2000, `until 5 days after the first failure (Retry-After ${retryAfter} s)`)
  await apps[0]!.mfa.unlock('ada')
  t.equal((await post(app, '/login', { user: 'ada', password: PASSWORD })).statusCode, 200, 'unlock() lifts it')
})

t.test('a store taking 2 ms per call with maxAge 1h: the lock marker never exceeds maxAge, no 500', async (t) => {
  const inner = new MemoryStore()
  const clock = makeClock(Date.now())
  const users = new Map<string, User>()
  const ctx = await buildMfaApp({
    clock,
    users,
    session: { store: slowStore(inner), maxAge: '1h', ttl: '30m', sandboxes: { 'otp-pending': { ttl: '15m' } } },
    mfa: { lockout: { maxFailures: 10, window: '1h', maxConsecutive: 20 } }
  })
  t.teardown(async () => { await ctx.app.close(); await inner.close() })
  users.set('ada', { passwordHash: await hashPassword(PASSWORD), mfa: {} })
  // Real time passes during the store calls: the clock follows it, as Date.now would.
  const timer = setInterval(() => { ctx.clock.advance(1) }, 1)
  t.teardown(() => { clearInterval(timer) })
  const responses: LightMyRequestResponse[] = []
  for (let round = 0; round < 3; round++) {
    if (round > 0) ctx.clock.advance(60 * MINUTE)
    responses.push(...await Promise.all(Array.from({ length: 40 }, async () => await post(ctx.app, '/login', { user: 'ada', password: 'guess' }))))
  }
  t.comment(JSON.stringify(tally(responses)))
  t.equal(responses.filter((r) => r.statusCode >= 500).length, 0, 'no 5xx (the old code answered 500 FST_XEMS_BAD_OPTION here)')
  t.equal(responses.filter((r) => r.statusCode === 401).length, 20, 'exactly maxConsecutive guesses evaluated over three windows')
  const locked = await post(ctx.app, '/login', { user: 'ada', password: PASSWORD })
  t.equal(locked.statusCode, 429, 'the account is locked')
  const marker = await ctx.app.xems.from('xems-mfa').get<number>('locked:ada')
  t.ok(marker !== null && marker - ctx.clock.now <= 3_600_000, 'the marker is written and lives at most maxAge')
})
