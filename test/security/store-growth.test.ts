/**
 * Issue 12, item 4: what an unauthenticated client can make the store keep.
 *
 * A failed login for a new name used to create two counters, one living 5 days (MemoryStore: ~1.2 KB of
 * heap per request for 5 days; Redis: two keys; the vault: entries kept through every compaction).
 * Now a name that is no account gets one counter that lives `lockout.window` (15 min), and an account
 * at most two counters and a marker whatever the number of failures, so what a client can make the
 * store keep is bounded by (request rate × lockout.window) for unknown names and by the number of
 * accounts for known ones. Over-long names and passwords are refused with 400 before any store work.
 * Without Redis the Redis case skips, unless CI is set: then it fails.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Redis } from 'ioredis'
import t from 'tap'
import { MemoryStore } from '../../lib/store/memory/memory-store.js'
import { RedisStore } from '../../lib/store/redis/redis-store.js'
import { hashPassword } from '../../lib/mfa/password.js'
import { makeClock } from '../helpers.js'
import { buildMfaApp, post, type User } from '../mfa-app.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const IN_CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false' && process.env.CI !== '0'
const MINUTE = 60_000
const N = 400

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
function heapUsed (): number {
  for (let i = 0; i < 3; i++) gc()
  return process.memoryUsage().heapUsed
}

/** A name per request, as a client spraying names sends them (about the length of an email address). */
const name = (i: number): string => `sprayed-name-${i}-${'x'.repeat(20)}@example.com`

t.test(`MemoryStore: ${N} failed logins for new names keep one counter each, gone after lockout.window`, async (t) => {
  const store = new MemoryStore({ sweepInterval: '1h' })
  const clock = makeClock(Date.now())
  const ctx = await buildMfaApp({ clock, session: { store }, logLevel: 'warn' })
  t.teardown(async () => { await ctx.app.close(); await store.close() })
  // Warm up (dummy hash, JIT), so the heap delta is the store's.
  for (let i = 0; i < 20; i++) await post(ctx.app, '/login', { user: `warm-${i}`, password: 'guess' })
  clock.advance(16 * MINUTE)
  while (store.sweep(clock.now) > 0);
  ctx.logs.length = 0
  const before = store.size
  const heapBefore = heapUsed()
  for (let i = 0; i < N; i += 20) {
    await Promise.all(Array.from({ length: 20 }, async (_, j) => await post(ctx.app, '/login', { user: name(i + j), password: 'guess' })))
  }
  ctx.logs.length = 0
  const heapAfter = heapUsed()
  const after = store.size
  t.equal(after.counters - before.counters, N, 'one counter per new name (before: two, one of them for 5 days)')
  t.equal(after.values - before.values, 0, 'no value')
  clock.advance(15 * MINUTE)
  while (store.sweep(clock.now) > 0);
  const heapSwept = heapUsed()
  t.same(store.size, before, 'after lockout.window (15 min) nothing of them is left')
  t.comment(`MemoryStore over HTTP: +${after.counters - before.counters} counters, +${after.values - before.values} values for ${N} requests; ` +
    `heap +${Math.round((heapAfter - heapBefore) / N)} B per request ` +
    `(mostly not the store's: ${Math.round((heapAfter - heapSwept) / N)} B were freed by the sweep)`)
})

t.test('MemoryStore heap per failed login for a new name: what the lockout keeps, measured on 20 000 names', async (t) => {
  const { XemsEngine } = await import('../../lib/session/engine.js')
  const count = 20_000
  const measure = async (keysPerName: (n: string) => string[], window: number): Promise<number> => {
    const store = new MemoryStore({ sweepInterval: '1h' })
    const engine = new XemsEngine({ store })
    const before = heapUsed()
    for (let i = 0; i < count; i++) for (const key of keysPerName(name(i))) await engine.hit(key, window)
    const bytes = (heapUsed() - before) / count
    await store.close()
    return Math.round(bytes)
  }
  // The smallest of three runs of each, the two kinds alternating: under CI's coverage on Node 24 the
  // first measurements of this test have twice come out at 505–507 B in both of two back-to-back runs,
  // then the next kind measured as usual (271 B here in every run alone). An allocation of the moment
  // (a few MB, whatever the process still settles after the previous test) is not what a name costs.
  let now = Infinity
  let old = Infinity
  for (let run = 0; run < 3; run++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    now = Math.min(now, await measure((n) => [`xems-mfa:window:${n}`], 15 * MINUTE))
    old = Math.min(old, await measure((n) => [`xems-mfa:fail:${n}`, `xems-mfa:consecutive:${n}`], 5 * 86_400_000))
  }
  t.comment(`MemoryStore: ${now} B per new name for 15 minutes now; the two counters before were ${old} B, one of them for 5 days`)
  t.ok(now < 400, `${now} B per request, for at most lockout.window`)
})

t.test('an account keeps at most two counters and a marker, however many failures', async (t) => {
  const store = new MemoryStore({ sweepInterval: '1h' })
  const clock = makeClock(Date.now())
  const users = new Map<string, User>()
  const ctx = await buildMfaApp({ clock, users, session: { store }, logLevel: 'warn' })
  t.teardown(async () => { await ctx.app.close(); await store.close() })
  users.set('ada', { passwordHash: await hashPassword('correct horse battery staple'), mfa: {} })
  for (let round = 0; round < 5; round++) {
    await Promise.all(Array.from({ length: 40 }, async () => await post(ctx.app, '/login', { user: 'ada', password: 'guess' })))
    clock.advance(15 * MINUTE)
  }
  t.ok(store.size.counters <= 2, `${store.size.counters} counters`)
  t.ok(store.size.values <= 1, `${store.size.values} values (the lock marker)`)
})

t.test('over-long names and passwords, and empty passwords, get 400 before any store work', async (t) => {
  const store = new MemoryStore()
  let calls = 0
  const counted = new Proxy(store, {
    get (target, property, receiver) {
      const value = Reflect.get(target, property, receiver)
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        if (property !== 'close' && property !== 'ready') calls++
        return value.apply(target, args)
      }
    }
  })
  const ctx = await buildMfaApp({ session: { store: counted } })
  t.teardown(async () => { await ctx.app.close(); await store.close() })
  await ctx.app.ready()
  const cases: Array<[string, { user: string, password: string }]> = [
    ['a name of 257 characters', { user: 'n'.repeat(257), password: 'guess' }],
    ['a name of 505 characters (a 500 before)', { user: 'n'.repeat(505), password: 'guess' }],
    ['a name of 100 000 characters', { user: 'n'.repeat(100_000), password: 'guess' }],
    ['a password of 1025 characters (skipped argon2 but counted, before)', { user: 'ada', password: 'p'.repeat(1025) }],
    ['an empty password', { user: 'ada', password: '' }]
  ]
  for (const [what, body] of cases) {
    calls = 0
    const r = await post(ctx.app, '/login', body)
    t.equal(r.statusCode, 400, `${what}: 400`)
    t.equal(r.json().code, 'FST_XEMS_MFA_BAD_INPUT')
    t.equal(calls, 0, `${what}: no store call`)
  }
  t.same(store.size, { sessions: 0, values: 0, counters: 0 }, 'nothing was stored')
  calls = 0
  const longest = await post(ctx.app, '/login', { user: 'n'.repeat(256), password: 'p'.repeat(1024) })
  t.equal(longest.statusCode, 401, 'the longest accepted name and password are checked as usual')
})

t.test(`the vault: ${N} failed logins for new names are gone from disk at the first compaction after lockout.window`, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'xems-growth-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const secret = randomBytes(32)
  const clock = makeClock(Date.now())
  const store = await MemoryStore.open({ clock: () => clock.now, persistence: { path: dir, secret } })
  const ctx = await buildMfaApp({ clock, session: { store }, logLevel: 'warn' })
  for (let i = 0; i < N; i += 20) {
    await Promise.all(Array.from({ length: 20 }, async (_, j) => await post(ctx.app, '/login', { user: name(i + j), password: 'guess' })))
  }
  await ctx.app.close()
  await store.close()
  const size = async (): Promise<number> => {
    let bytes = 0
    for (const file of await readdir(dir)) if (file.startsWith('xems.snapshot') || file.startsWith('xems.journal')) bytes += (await stat(join(dir, file))).size
    return bytes
  }
  const written = await size()
  // A restart within the window keeps them (they are live), one after it drops them.
  const reopened = await MemoryStore.open({ clock: () => clock.now + 16 * MINUTE, persistence: { path: dir, secret } })
  t.equal(reopened.size.counters, 0, 'no counter survives lockout.window (before: one 5-day counter per name)')
  await reopened.close()
  const kept = await size()
  t.comment(`the vault: ${written} B on disk after ${N} failures (~${Math.round(written / N)} B each), ${kept} B after the compaction past the window`)
  t.ok(kept < 2048, `${kept} B left: an empty vault`)
})

const probe = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 1, retryStrategy: () => null })
probe.on('error', () => {})
const unreachable = await probe.connect().then(() => null, (err: Error) => `Redis is not reachable at ${REDIS_URL} (${err.message})`)
probe.disconnect()

if (unreachable !== null) {
  if (IN_CI) t.fail(`${unreachable}: CI is set, so the Redis store-growth test must run`)
  else t.test('Redis: one key per new name', { skip: unreachable }, async () => {})
} else {
  t.test('Redis: a failed login for a new name leaves one key, expiring within lockout.window', async (t) => {
    const prefix = `xems-growth:${randomBytes(6).toString('hex')}:`
    const client = new Redis(REDIS_URL)
    const store = new RedisStore({ client, prefix, secret: randomBytes(32) })
    const ctx = await buildMfaApp({ session: { store }, logLevel: 'warn' })
    t.teardown(async () => {
      await ctx.app.close()
      await store.close()
      const keys = await client.keys(`${prefix}*`)
      if (keys.length > 0) await client.del(...keys)
      await client.quit()
    })
    const baseline = (await client.keys(`${prefix}*`)).length
    await Promise.all(Array.from({ length: 50 }, async (_, i) => await post(ctx.app, '/login', { user: name(i), password: 'guess' })))
    const keys = await client.keys(`${prefix}*`)
    t.equal(keys.length - baseline, 50, `${keys.length - baseline} keys for 50 new names (before: 100)`)
    let longest = 0
    for (const key of keys) longest = Math.max(longest, await client.pttl(key))
    t.ok(longest > 0 && longest <= 15 * MINUTE, `the longest lives ${Math.round(longest / 1000)} s (before: 5 days)`)
  })
}
