/**
 * RedisStore against a real Redis (REDIS_URL, default redis://127.0.0.1:6379): the conformance suite,
 * unchanged, then what only Redis has: the layout (one hash per session, user index apart), sealing and
 * placement binding, secrets and their rotation, the layout format, Redis expiries, round trips, the user
 * index's write order, replayed scripts, failure behaviour. Each test works under its own random prefix
 * and deletes its keys. Without Redis the file skips, unless CI is set: then it fails.
 * With REDIS_CLUSTER_NODES (host:port,host:port,...) the conformance suite also runs on that Redis
 * Cluster, and 3000 sessions must spread over its masters.
 */
import { createHash, randomBytes } from 'node:crypto'
import { type Cluster, Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { Keyring, successorOf } from '../../lib/crypto/cipher.js'
import { generateLocator, recordIdOf, secretKeyOf, sessionTokenOf } from '../../lib/session/token.js'
import type { SessionStore } from '../../lib/store/contract.js'
import { BOX_LENGTH, SCRIPTS } from '../../lib/store/redis/scripts/index.js'
import { REDIS_FORMAT_VERSION, REDIS_SEAL_PURPOSE, RedisStore, SESSION_LIFETIME_BOUND_MS } from '../../lib/store/redis/redis-store.js'
import { generateToken } from '../../lib/crypto/random-token.js'
import { clusterFromEnv, connect, deleteUnder, deleteUnderCluster, IN_CI, keysUnder, newPrefix, REDIS_URL } from '../redis/redis-helpers.js'
import { runStoreConformance } from './conformance.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const WINDOW = 600_000

const newToken = (locator = generateLocator()): string => sessionTokenOf(locator, generateToken())
const newKey = (): string => secretKeyOf(newToken())
const newBox = (): string => successorOf(generateToken()).box
const userDigest = (userId: string): string => createHash('sha256').update('user').update('\u0000').update(userId).digest('base64url')
const sessionKey = (prefix: string, id: string): string => `${prefix}s:{${id}}`
const userKey = (prefix: string, userId: string): string => `${prefix}u:{${userDigest(userId)}}`

/** Everything stored under a prefix: key names, hash fields and values, sorted set members. */
async function dump (client: Redis, prefix: string): Promise<Array<{ key: string, field: string, value: Buffer }>> {
  const entries: Array<{ key: string, field: string, value: Buffer }> = []
  for (const key of await keysUnder(client, prefix)) {
    const type = await client.type(key)
    if (type === 'hash') {
      for (const [field, value] of Object.entries(await client.hgetallBuffer(key))) entries.push({ key, field, value })
    } else if (type === 'zset') {
      for (const member of await client.zrangeBuffer(key, 0, -1)) entries.push({ key, field: '', value: member })
    } else {
      entries.push({ key, field: '', value: await client.getBuffer(key) ?? Buffer.alloc(0) })
    }
  }
  return entries
}

function keyIdOf (secret: Buffer): Buffer {
  return new Keyring([secret], REDIS_SEAL_PURPOSE).seal('', 'id').subarray(1, 5)
}

interface Created { id: string, key: string, token: string, locator: string }

async function create (
  store: SessionStore, options: { sandbox?: string, userId?: string, data?: Record<string, string>, now?: number, idleTtl?: number, absolute?: number } = {}
): Promise<Created> {
  const locator = generateLocator()
  const id = recordIdOf(locator)
  const token = newToken(locator)
  const now = options.now ?? Date.now()
  await store.create({
    id,
    sandbox: options.sandbox ?? 'auth-active',
    tokenKey: secretKeyOf(token),
    data: options.data ?? { user: '"ada"' },
    now,
    idleTtl: options.idleTtl ?? HOUR,
    absoluteExpiresAt: now + (options.absolute ?? 5 * DAY),
    ...(options.userId === undefined ? {} : { userId: options.userId })
  })
  return { id, key: secretKeyOf(token), token, locator }
}

const resolveWith = async (store: SessionStore, id: string, key: string, now = Date.now(), sandbox?: string) =>
  await store.resolve({ id, tokenKey: key, now, gracePeriod: 2000, revokeOnReuse: true, ...(sandbox === undefined ? {} : { sandbox }) })

const connected = await connect()
if (typeof connected === 'string') {
  if (IN_CI) t.fail(`${connected}: CI is set, so the RedisStore tests must run (start Redis or set REDIS_URL)`)
  else t.plan(0, `${connected}: start Redis or set REDIS_URL to run the RedisStore tests`)
} else {
  const client = connected
  t.teardown(async () => { await client.quit() })
  const secret = randomBytes(32)

  /** A store under a fresh prefix; its keys are deleted when the test ends. */
  function scratch (t: Test, options: { secret?: Buffer | Buffer[], prefix?: string, client?: Redis } = {}): { store: RedisStore, prefix: string } {
    const prefix = options.prefix ?? newPrefix()
    const store = new RedisStore({ client: options.client ?? client, prefix, secret: options.secret ?? secret })
    t.teardown(async () => {
      await store.close()
      await deleteUnder(client, prefix)
    })
    return { store, prefix }
  }
  const resolve = async (store: SessionStore, c: { id: string, key: string }, now?: number, sandbox?: string) => await resolveWith(store, c.id, c.key, now, sandbox)

  t.test('RedisStore passes the store conformance suite', async (t) => {
    runStoreConformance(t, async () => {
      const prefix = newPrefix()
      const store = new RedisStore({ client, prefix, secret })
      return {
        store,
        cleanup: async () => {
          await store.close()
          await deleteUnder(client, prefix)
        }
      }
    })
  })

  t.test('options are checked, naming the option', async (t) => {
    const code = (c: string, name: RegExp): { code: string, message: RegExp } => ({ code: c, message: name })
    t.throws(() => new RedisStore({ secret } as never), code('FST_XEMS_BAD_OPTION', /"client"/))
    t.throws(() => new RedisStore({ client: {} as never, secret }), code('FST_XEMS_BAD_OPTION', /"client"/))
    t.throws(() => new RedisStore({ client } as never), code('FST_XEMS_BAD_OPTION', /"secret"/))
    t.throws(() => new RedisStore({ client, secret: 'short' }), code('FST_XEMS_BAD_SECRET', /"secret"/))
    t.throws(() => new RedisStore({ client, secret: [] }), code('FST_XEMS_BAD_OPTION', /"secret"/))
    t.throws(() => new RedisStore({ client, secret: [secret, 'nope'] }), code('FST_XEMS_BAD_SECRET', /"secret\[1\]"/))
    t.throws(() => new RedisStore({ client, secret, prefix: 'a{b}' }), code('FST_XEMS_BAD_OPTION', /"prefix"/))
    t.throws(() => new RedisStore({ client, secret, prefix: '' }), code('FST_XEMS_BAD_OPTION', /"prefix"/))
    const tagged = new Redis(REDIS_URL, { keyPrefix: '{app}:', lazyConnect: true })
    t.teardown(() => { tagged.disconnect() })
    t.throws(
      () => new RedisStore({ client: tagged, secret }), code('FST_XEMS_BAD_OPTION', /keyPrefix with a brace/),
      'a client keyPrefix with a hash tag would put every session in one slot'
    )
    t.equal(new RedisStore({ client, secret }).prefix, 'xems:', 'default prefix')
    t.ok(new RedisStore({ client, secret: secret.toString('hex'), prefix: 'app/sessions:' }), 'hex secret, custom prefix')
  })

  t.test('the migration index score bound is the engine cap', async (t) => {
    // The store keeps its own copy so that it does not import the engine.
    const { MAX_AGE_CAP_MS } = await import('../../lib/session/engine.js')
    t.equal(SESSION_LIFETIME_BOUND_MS, MAX_AGE_CAP_MS)
  })

  t.test('round trips: resolve and commit one EVALSHA each; a user adds one to create, migrate and destroy', async (t) => {
    const counted = new Redis(REDIS_URL)
    counted.on('error', () => {})
    t.teardown(() => { counted.disconnect() })
    const prefix = newPrefix()
    t.teardown(async () => { await deleteUnder(client, prefix) })
    const store = new RedisStore({ client: counted, prefix, secret })
    await store.ready()
    const sent: string[] = []
    const original = counted.sendCommand
    counted.sendCommand = function (this: Redis, ...args: Parameters<Redis['sendCommand']>) {
      sent.push(args[0].name)
      return original.apply(this, args)
    } as Redis['sendCommand']
    const roundTrips = async (what: string, expected: number, operation: () => Promise<unknown>): Promise<void> => {
      sent.length = 0
      await operation()
      t.equal(sent.length, expected, `${what}: ${expected} round trip${expected > 1 ? 's' : ''} (${sent.join(', ')})`)
    }
    const now = Date.now()
    const locator = generateLocator()
    const id = recordIdOf(locator)
    const first = secretKeyOf(newToken(locator))
    const second = secretKeyOf(newToken(locator))
    const plain = recordIdOf(generateLocator())
    await roundTrips(
      'create without a user', 1,
      async () => await store.create({ id: plain, sandbox: 'auth-active', tokenKey: newKey(), data: { a: '1' }, now, idleTtl: HOUR, absoluteExpiresAt: now + DAY })
    )
    await roundTrips(
      'create with a user (index first, then the session)', 2,
      async () => await store.create({ id, sandbox: 'otp-pending', tokenKey: first, data: { a: '1', b: '2' }, userId: 'u1', now, idleTtl: HOUR, absoluteExpiresAt: now + DAY })
    )
    await roundTrips('resolve (live, first presentation)', 1, async () => await store.resolve({ id, tokenKey: first, now, gracePeriod: 2000, revokeOnReuse: true }))
    await roundTrips('resolve (live again)', 1, async () => await store.resolve({ id, tokenKey: first, now, gracePeriod: 2000, revokeOnReuse: true }))
    await roundTrips(
      'commit (patch + rotate)', 1,
      async () => await store.commit({ id, tokenKey: first, patch: { a: '3', b: null, c: '4' }, rotate: { newKey: second, box: newBox(), unseenWindow: WINDOW }, now })
    )
    await roundTrips('resolve (grace, with chain)', 1, async () => await store.resolve({ id, tokenKey: first, now: now + 1, gracePeriod: 2000, revokeOnReuse: true }))
    await roundTrips(
      'commit (late: patch, chain)', 1,
      async () => await store.commit({ id, tokenKey: first, patch: { d: '5' }, rotate: { newKey: newKey(), box: newBox(), unseenWindow: WINDOW }, now: now + 2 })
    )
    await roundTrips('listUser (index, then one read per session)', 2, async () => await store.listUser('u1', now + 3))
    await roundTrips(
      'migrate without a user', 1,
      async () => await store.migrate({
        id: plain, tokenKey: newKey(), from: 'auth-active', to: 'auth-active', newKey: newKey(), retiredUntil: now + WINDOW, data: null, idleTtl: HOUR, now: now + 4
      })
    )
    await roundTrips(
      'migrate with a user', 2,
      async () => await store.migrate({
        id, tokenKey: second, from: 'otp-pending', to: 'auth-active', newKey: newKey(), retiredUntil: now + WINDOW, data: null, idleTtl: HOUR, userId: 'u2', now: now + 4
      })
    )
    await roundTrips('destroy of a session with a user (and its index entry)', 2, async () => await store.destroy(id))
    await roundTrips('destroy of a session without one', 1, async () => await store.destroy(plain))
    const other = await create(store, { userId: 'u3', now })
    await roundTrips('revokeUser, one session (index, the session, the index entries)', 3, async () => await store.revokeUser('u3', now + 5))
    t.same(await resolve(store, other, now + 6), { status: 'none' })
    await roundTrips('revokeUser, nobody', 1, async () => await store.revokeUser('u2', now + 5))
    await roundTrips('kvSet', 1, async () => await store.kvSet('s', 'k', '"v"', 1000, now))
    await roundTrips('kvGet', 1, async () => await store.kvGet('s', 'k', now))
    await roundTrips('kvAdd', 1, async () => await store.kvAdd('s', 'k2', '"v"', 1000, now))
    await roundTrips('kvTake', 1, async () => await store.kvTake('s', 'k2', now))
    await roundTrips('kvDel', 1, async () => await store.kvDel('s', 'k'))
    await roundTrips('increment', 1, async () => await store.increment('c', 1000, now))
    await roundTrips('resetCounter', 1, async () => await store.resetCounter('c'))
    const userLimit = { max: 1, onLimit: 'end-oldest' } as const
    const laptop = recordIdOf(generateLocator())
    await store.create({ id: laptop, sandbox: 'auth-active', tokenKey: newKey(), data: {}, now, idleTtl: HOUR, absoluteExpiresAt: now + DAY, userId: 'u5', userLimit })
    const pending = await create(store, { sandbox: 'otp-pending', now })
    const promote = async (tokenKey: string): Promise<unknown> => await store.migrate({
      id: pending.id, tokenKey, from: 'otp-pending', to: 'auth-active', newKey: newKey(), retiredUntil: now + WINDOW, data: null, idleTtl: HOUR, userId: 'u5', now, userLimit
    })
    await roundTrips(
      'migrate with maxSessionsPerUser that does not happen (the record\'s user, the admission, the session, the undo)', 4,
      async () => { t.equal(await promote(newKey()), false) }
    )
    await roundTrips(
      'migrate with maxSessionsPerUser that ends a session (the record\'s user, the admission, the session, the ending, the two sets)', 5,
      async () => { t.same(await promote(pending.key), { status: 'admitted', ended: [laptop] }) }
    )
    counted.sendCommand = original
  })

  t.test('one hash per session, whatever its history; nothing readable reaches Redis but what docs/stores.md lists', async (t) => {
    const { store, prefix } = scratch(t)
    const marker = `plain-${randomBytes(8).toString('hex')}`
    const userId = `${marker}-user@example.com`
    const c = await create(store, {
      userId,
      data: { [`${marker}-datakey`]: JSON.stringify(`${marker}-session-value`), note: JSON.stringify(`${marker}-note`) }
    })
    let key = c.key
    const keys = [key]
    let now = Date.now()
    for (let i = 0; i < 5; i++) {
      t.equal((await resolve(store, { id: c.id, key }, now)).status, 'live')
      const next = newKey()
      t.match(
        await store.commit({
          id: c.id, tokenKey: key, patch: { [`more${i}`]: JSON.stringify(`${marker}-patched`) }, rotate: { newKey: next, box: newBox(), unseenWindow: WINDOW }, now
        }),
        { status: 'ok', rotated: true }
      )
      key = next
      keys.push(key)
      now += 1
    }
    await store.kvSet('users-registry', `${marker}-kv-key`, JSON.stringify(`${marker}-kv-value`), HOUR, now)
    await store.increment(`${marker}-counter-key`, HOUR, now)
    const names = (await keysUnder(client, prefix)).sort()
    t.same(names.filter((name) => name.includes('{')), [sessionKey(prefix, c.id), userKey(prefix, userId)].sort(),
      'after five rotations the session is still one hash, plus its user index: no key per token')
    const entries = await dump(client, prefix)
    const everything = Buffer.concat(entries.flatMap((entry) => [Buffer.from(entry.key), Buffer.from(entry.field), entry.value]))
    t.equal(everything.indexOf(marker), -1, 'no session data, data key name, user id, value, value key or counter key in clear')
    t.equal(everything.indexOf(c.locator), -1, 'never the locator (the store files the session under its record id)')
    t.equal(everything.indexOf(c.token.slice(23, 35)), -1, 'nor any piece of a token secret')
    for (const tk of keys) {
      for (const entry of entries) {
        t.notOk(entry.key.includes(tk), 'no key is named after a token')
        if (entry.value.includes(tk)) t.ok(['k', 'p'].includes(entry.field), `token keys only in the rotation fields (${entry.field})`)
      }
    }
    const session = await client.hgetall(sessionKey(prefix, c.id))
    t.same(
      Object.keys(session).filter((field) => !field.startsWith('d:')).sort(), ['ax', 'ca', 'it', 'k', 'ls', 'ms', 'mt', 'p', 's', 'sb', 'u', 'uk', 'xp'],
      'the documented session fields'
    )
    t.equal(session.sb, 'auth-active', 'the sandbox is readable (Lua compares it)')
    t.equal(session.k, key, 'k: the current token key')
    t.equal(session.uk, userDigest(userId), 'uk: the digest that names the user index')
    t.equal(Object.keys(session).filter((field) => field.startsWith('d:')).length, 7, 'one sealed field per top-level data key')
    t.match(session.p, /^(\d{15}r[A-Za-z0-9_-]{22}[A-Za-z0-9_-]{66}){5}$/, 'p: five fixed-width entries, each deadline, flag, key and box')
    t.same(
      await client.zrange(userKey(prefix, userId), 0, -1, 'WITHSCORES'), [c.id, String(Number(session.ca) + 5 * DAY)], 'the user index: record id scored by its absolute deadline'
    )
  })

  t.test('maxSessionsPerUser on Redis: a counted record missing a minute after its admission is fenced; marked ones a crash left are ended by the next sign-in', async (t) => {
    const { store, prefix } = scratch(t)
    const t0 = Date.now()
    const refuse = { max: 1, onLimit: 'refuse' } as const
    const sign = async (userId: string, now: number, userLimit: { max: number, onLimit: 'refuse' | 'end-oldest' }): Promise<{ id: string, key: string, result: unknown }> => {
      const id = recordIdOf(generateLocator())
      const key = newKey()
      const result = await store.create({ id, sandbox: 'auth-active', tokenKey: key, data: {}, now, idleTtl: HOUR, absoluteExpiresAt: now + 5 * DAY, userId, userLimit })
      return { id, key, result }
    }
    const a = await sign('fence-u', t0, refuse)
    t.same(a.result, { status: 'admitted', ended: [] })
    t.same(await client.zrange(`${prefix}l:{${userDigest('fence-u')}}`, 0, -1), [a.id], 'the limit set, in the slot of the user index')
    // As if a's create were still on its way: the record is missing.
    await client.del(sessionKey(prefix, a.id))
    t.same((await sign('fence-u', t0 + 59_000, refuse)).result, { status: 'refused' }, 'missing for less than a minute: taken for a create on its way, counted')
    const b = await sign('fence-u', t0 + 61_000, refuse)
    t.same(b.result, { status: 'admitted', ended: [] }, 'missing for more than a minute: fenced, no longer counted')
    t.same(await client.hgetall(sessionKey(prefix, a.id)), { x: '1' }, 'a tombstone now fences the record')
    await store.create({ id: a.id, sandbox: 'auth-active', tokenKey: a.key, data: {}, now: t0 + 61_001, idleTtl: HOUR, absoluteExpiresAt: t0 + 5 * DAY, userId: 'fence-u' })
    t.same(await resolve(store, a, t0 + 61_002), { status: 'none' }, 'so a create that arrives that late is born revoked')

    // A sign-in that marked a session to end at t0 + 2, then died before ending it (here: the mark set by hand).
    const end = { max: 2, onLimit: 'end-oldest' } as const
    const c = await sign('crash-u', t0, end)
    const d = await sign('crash-u', t0 + 1, end)
    await client.zadd(`${prefix}l:{${userDigest('crash-u')}}`, String(-(t0 + 2)), c.id)
    t.equal((await resolve(store, c, t0 + 3)).status, 'live', 'marked, not yet ended: still live (the documented window)')
    const e = await sign('crash-u', t0 + 4, end)
    t.same(e.result, { status: 'admitted', ended: [] }, 'a sign-in within 10 s leaves the mark to the sign-in that made it (and does not count it)')
    t.equal((await resolve(store, c, t0 + 5)).status, 'live')
    const f = await sign('crash-u', t0 + 10_003, end)
    t.same(f.result, { status: 'admitted', ended: [c.id, d.id] }, 'a sign-in after that ends it, with the oldest counted one')
    t.same(await resolve(store, c, t0 + 10_004), { status: 'none' })
    t.equal((await resolve(store, e, t0 + 10_004)).status, 'live')
    t.equal((await store.listUser('crash-u', t0 + 10_005)).length, 2)
  })

  t.test('maxSessionsPerUser on Redis: a migration that does not happen ends none and leaves the limit set as it was; its retry is counted', async (t) => {
    const { store, prefix } = scratch(t)
    const t0 = Date.now()
    const limitKey = `${prefix}l:{${userDigest('undo-u')}}`
    const sign = async (now: number): Promise<{ id: string, key: string }> => {
      const id = recordIdOf(generateLocator())
      const key = newKey()
      await store.create({
        id, sandbox: 'auth-active', tokenKey: key, data: {}, now, idleTtl: HOUR, absoluteExpiresAt: now + 5 * DAY, userId: 'undo-u', userLimit: { max: 2, onLimit: 'end-oldest' }
      })
      return { id, key }
    }
    const c = await sign(t0)
    const d = await sign(t0 + 1)
    // A sign-in that marked c at t0 + 2 and died before ending it (the mark set by hand): the next admission hands it out again.
    await client.zadd(limitKey, String(-(t0 + 2)), c.id)
    const before = await client.zrange(limitKey, 0, -1, 'WITHSCORES')
    const p = await create(store, { sandbox: 'otp-pending', now: t0 + 20_000 })
    const promote = async (tokenKey: string, now: number): Promise<unknown> => {
      const userLimit = { max: 1, onLimit: 'end-oldest' } as const
      const retiredUntil = now + WINDOW
      const move = { from: 'otp-pending', to: 'auth-active', newKey: newKey(), retiredUntil, data: null, idleTtl: HOUR }
      return await store.migrate({ id: p.id, tokenKey, ...move, userId: 'undo-u', now, userLimit })
    }
    t.equal(await promote(newKey(), t0 + 20_001), false, 'a token the session does not have: the migration does not happen')
    t.equal((await resolve(store, c, t0 + 20_002)).status, 'live', 'the old mark is left to the next admission')
    t.equal((await resolve(store, d, t0 + 20_002)).status, 'live', 'the oldest counted session, which its admission marked, is not ended')
    t.same(await client.zrange(limitKey, 0, -1, 'WITHSCORES'), before, 'the limit set is as before: d unmarked, the record not in it')
    t.same(
      await promote(p.key, t0 + 20_003), { status: 'admitted', ended: [c.id, d.id] },
      'the retry is counted anew (its index entry, left by the first try, does not count it as admitted already)'
    )
    t.equal((await resolve(store, d, t0 + 20_004)).status, 'none')
    t.same((await store.listUser('undo-u', t0 + 20_004)).map((info) => info.id), [p.id], 'the user has its one session')
  })

  t.test('token keys of any shape work (stored at a fixed width); a grace box must be the engine\'s', async (t) => {
    t.equal(newBox().length, BOX_LENGTH, 'the scripts store boxes at the width successorOf makes them')
    const { store, prefix } = scratch(t)
    const now = Date.now()
    const id = recordIdOf(generateLocator())
    await store.create({ id, sandbox: 'a', tokenKey: 'first key, not a digest ✓', data: {}, now, idleTtl: HOUR, absoluteExpiresAt: now + DAY })
    t.equal((await resolveWith(store, id, 'first key, not a digest ✓', now)).status, 'live')
    t.equal((await resolveWith(store, id, 'first key, not a digest', now + 1)).status, 'reused', 'a different key is another key')
    const again = recordIdOf(generateLocator())
    await store.create({ id: again, sandbox: 'a', tokenKey: 'k1', data: {}, now, idleTtl: HOUR, absoluteExpiresAt: now + DAY })
    t.equal((await resolveWith(store, again, 'k1', now)).status, 'live')
    const box = newBox()
    t.match(await store.commit({ id: again, tokenKey: 'k1', patch: null, rotate: { newKey: 'k2', box, unseenWindow: WINDOW }, now }), { rotated: true })
    const grace = await resolveWith(store, again, 'k1', now + 1)
    t.same(grace.status === 'grace' ? grace.chain : null, [box])
    t.equal((await client.hget(sessionKey(prefix, again), 'k'))!.length, 22, 'stored as its digest')
    await t.rejects(
      store.commit({ id: again, tokenKey: 'k2', patch: null, rotate: { newKey: 'k3', box: 'opaque-box', unseenWindow: WINDOW }, now }),
      /grace box must be what successorOf returns/
    )
    t.equal((await resolveWith(store, again, 'k2', now + 2)).status, 'live', 'refused before anything was sent')
  })

  t.test('sessions, moved or tampered with in Redis, do not resolve', async (t) => {
    const { store, prefix } = scratch(t)
    await store.kvSet('users-registry', 'ada', '"ada-value"', HOUR, Date.now())
    const [adaKey] = await keysUnder(client, `${prefix}v:users-registry:`)
    await store.kvSet('users-registry', 'bob', '"bob-value"', HOUR, Date.now())
    const bobKey = (await keysUnder(client, `${prefix}v:users-registry:`)).find((k) => k !== adaKey)!
    await client.hset(bobKey, 'v', (await client.hgetBuffer(adaKey!, 'v'))!)
    t.equal(await store.kvGet('users-registry', 'bob', Date.now()), null, "ada's value copied onto bob's key does not open")
    t.equal(await store.kvGet('users-registry', 'ada', Date.now()), '"ada-value"', 'the original still does')
    await client.copy(adaKey!, `${prefix}v:other-sandbox:${adaKey!.split(':').at(-1)!}`)
    t.equal(await store.kvGet('other-sandbox', 'ada', Date.now()), null, 'nor in another sandbox under the same name')
    const sealed = (await client.hgetBuffer(adaKey!, 'v'))!
    sealed[sealed.length - 1]! ^= 1
    await client.hset(adaKey!, 'v', sealed)
    t.equal(await store.kvGet('users-registry', 'ada', Date.now()), null, 'a flipped bit: absent')

    const a = await create(store, { data: { role: '"admin"' }, userId: 'alice' })
    const b = await create(store, { data: { role: '"guest"' }, userId: 'bob' })
    t.equal((await resolve(store, a)).status, 'live', 'a resolved first: its fields opened once (and kept by what they sealed and where)')
    const field = Object.keys(await client.hgetall(sessionKey(prefix, a.id))).find((f) => f.startsWith('d:'))!
    await client.hset(sessionKey(prefix, b.id), field, (await client.hgetBuffer(sessionKey(prefix, a.id), field))!)
    t.same(await resolve(store, b), { status: 'none' }, "a's data field copied into b's session: b is not trusted")
    t.equal((await resolve(store, a)).status, 'live', 'a still resolves')

    const opened = await create(store, { data: { role: '"admin"' } })
    t.equal((await resolve(store, opened)).status, 'live')
    const flipped = (await client.hgetBuffer(sessionKey(prefix, opened.id), field))!
    flipped[flipped.length - 1]! ^= 1
    await client.hset(sessionKey(prefix, opened.id), field, flipped)
    t.same(await resolve(store, opened), { status: 'none' }, 'a flipped bit in a field that opened a moment before: not trusted')

    const victim = await create(store, { data: { secret: '"victim"' }, userId: 'victim' })
    const thief = await create(store, { userId: 'thief' })
    const copied = await client.hgetallBuffer(sessionKey(prefix, victim.id))
    await client.del(sessionKey(prefix, thief.id))
    await client.hset(sessionKey(prefix, thief.id), { ...copied, k: thief.key })
    t.same(await resolve(store, thief), { status: 'none' }, "the victim's whole record copied under the thief's record id (the thief's token made current) does not open")
    const u = await create(store, { userId: 'someone-else' })
    await client.hset(sessionKey(prefix, u.id), 'u', (await client.hgetBuffer(sessionKey(prefix, victim.id), 'u'))!)
    t.same(await resolve(store, u), { status: 'none' }, "another session's sealed user id does not open here")

    const pending = await create(store, { sandbox: 'otp-pending' })
    await client.hset(sessionKey(prefix, pending.id), 'sb', 'auth-active')
    t.same(await resolve(store, pending, Date.now(), 'auth-active'), { status: 'none' }, 'a sandbox edited in Redis (MFA skipped) does not resolve')
    const capped = await create(store)
    await client.hset(sessionKey(prefix, capped.id), 'ax', String(Date.now() + 30 * DAY))
    t.same(await resolve(store, capped), { status: 'none' }, 'an absolute cap edited in Redis does not resolve')
    const idle = await create(store, { idleTtl: 60_000 })
    await client.hset(sessionKey(prefix, idle.id), 'it', String(5 * DAY))
    t.same(await resolve(store, idle), { status: 'none' }, 'an idle lifetime edited in Redis does not resolve')

    const damaged = await create(store)
    t.equal((await resolve(store, damaged)).status, 'live')
    const next = newKey()
    await store.commit({ id: damaged.id, tokenKey: damaged.key, patch: null, rotate: { newKey: next, box: newBox(), unseenWindow: WINDOW }, now: Date.now() })
    await client.hset(sessionKey(prefix, damaged.id), 'p', '12,garbage')
    t.same(await resolve(store, damaged), { status: 'none' }, 'a damaged rotation state: no session (not a Redis error, not a theft signal)')
    t.same(await store.commit({ id: damaged.id, tokenKey: damaged.key, patch: { x: '1' }, rotate: null, now: Date.now() }), { status: 'gone' })
  })

  t.test('a session read again is taken as it opened only while every field is the same: other instances\' writes, a migration, tampering', async (t) => {
    const { store, prefix } = scratch(t)
    const other = new RedisStore({ client, prefix, secret })
    t.teardown(async () => { await other.close() })
    const sessionOf = (result: Awaited<ReturnType<SessionStore['resolve']>>) => {
      if (result.status !== 'live' && result.status !== 'grace') throw new Error(`expected a session, got ${result.status}`)
      return result.session
    }
    const c = await create(store, { data: { role: '"guest"', n: '1' }, userId: 'ada' })
    const first = sessionOf(await resolve(store, c))
    first.data.role = '"admin"'
    first.sandbox = 'admin'
    const now = Date.now() + 10
    const again = sessionOf(await resolve(store, c, now))
    t.same({ ...again.data }, { role: '"guest"', n: '1' }, 'what a caller did to the session it got is not what the next read gets')
    t.equal(again.sandbox, 'auth-active')
    t.equal(again.lastSeenAt, now, 'lastSeenAt is the read\'s own')
    t.equal(again.userId, 'ada')

    await other.commit({ id: c.id, tokenKey: c.key, patch: { n: null }, rotate: null, now: Date.now() })
    t.same({ ...sessionOf(await resolve(store, c)).data }, { role: '"guest"' }, 'a key another instance deleted is gone at the next resolve')
    await other.commit({ id: c.id, tokenKey: c.key, patch: { role: '"admin"' }, rotate: null, now: Date.now() })
    t.same({ ...sessionOf(await resolve(store, c)).data }, { role: '"admin"' }, "another instance's write is read by the next resolve")
    const moved = newKey()
    t.equal(await other.migrate({
      id: c.id, tokenKey: c.key, from: 'auth-active', to: 'admin', newKey: moved, retiredUntil: Date.now() + 1000, data: null, idleTtl: 2 * HOUR, userId: 'bob', now: Date.now()
    }), true)
    const migrated = sessionOf(await resolveWith(store, c.id, moved))
    t.same([migrated.sandbox, migrated.idleTtl, migrated.userId, migrated.migrations], ['admin', 2 * HOUR, 'bob', 1], 'a migration by another instance is read by the next resolve')

    const sealed = (await client.hgetBuffer(sessionKey(prefix, c.id), 'u'))!
    sealed[sealed.length - 1]! ^= 1
    await client.hset(sessionKey(prefix, c.id), 'u', sealed)
    t.same(await resolveWith(store, c.id, moved), { status: 'none' }, 'a flipped bit in the sealed user id of a session read a moment before: not trusted')
    sealed[sealed.length - 1]! ^= 1
    await client.hset(sessionKey(prefix, c.id), 'u', sealed)
    t.equal((await resolveWith(store, c.id, moved)).status, 'live', 'the original bytes open again')
    await client.hset(sessionKey(prefix, c.id), 'd:extra', sealed)
    t.same(await resolveWith(store, c.id, moved), { status: 'none' }, 'a field added behind the store\'s back: not trusted')
  })

  t.test('a wrong secret fails loudly with FST_XEMS_WRONG_SECRET', async (t) => {
    const { store, prefix } = scratch(t)
    const c = await create(store)
    const wrong = new RedisStore({ client, prefix, secret: randomBytes(32) })
    await t.rejects(wrong.ready(), { code: 'FST_XEMS_WRONG_SECRET', message: /data under prefix "[^"]*" does not open with option "secret"/ })
    await t.rejects(resolve(wrong, c), { code: 'FST_XEMS_WRONG_SECRET' })
    await t.rejects(wrong.kvGet('s', 'k', Date.now()), { code: 'FST_XEMS_WRONG_SECRET' })
    t.equal((await resolve(store, c)).status, 'live', 'the right secret still works')
    const canary = await client.hgetallBuffer(`${prefix}canary`)
    t.same(Object.keys(canary).sort(), [keyIdOf(secret).toString('hex'), 'format'].sort(), 'the canary: the layout format and one marker per secret')
    t.equal(canary.format!.toString(), String(REDIS_FORMAT_VERSION))
    const field = keyIdOf(secret).toString('hex')
    const sealed = canary[field]!
    sealed[sealed.length - 1]! ^= 1
    await client.hset(`${prefix}canary`, field, sealed)
    await t.rejects(new RedisStore({ client, prefix, secret }).ready(), { code: 'FST_XEMS_WRONG_SECRET', message: /tampered/ })
  })

  t.test('a prefix in another layout format is refused at start-up with FST_XEMS_STORE_FORMAT, naming both formats', async (t) => {
    // Format 1 (one hash tag per prefix, a key per token) kept a canary of sealed markers without a
    // format field, and its own marker text.
    const { prefix } = scratch(t)
    const id = keyIdOf(secret).toString('hex')
    const v1Marker = new Keyring([secret], REDIS_SEAL_PURPOSE).seal('fastify-xems redis canary v1', JSON.stringify([prefix, 'canary', id]))
    await client.hset(`${prefix}canary`, id, v1Marker)
    await client.hset(`${prefix}{${prefix}}s:old-session`, 'sb', 'auth-active', 'cur', 'x')
    const store = new RedisStore({ client, prefix, secret })
    await t.rejects(
      store.ready(), { code: 'FST_XEMS_STORE_FORMAT', message: /layout format 1; this version reads format 2 only.*Delete every key under the prefix .* or choose another prefix/ }
    )
    await t.rejects(
      store.create({ id: recordIdOf(generateLocator()), sandbox: 'a', tokenKey: newKey(), data: {}, now: Date.now(), idleTtl: HOUR, absoluteExpiresAt: Date.now() + HOUR }),
      { code: 'FST_XEMS_STORE_FORMAT' }, 'every operation fails the same way; nothing is written'
    )
    t.same(Object.keys(await client.hgetall(`${prefix}canary`)), [id], 'the canary is left as it was')
    await t.rejects(new RedisStore({ client, prefix, secret: randomBytes(32) }).ready(), { code: 'FST_XEMS_STORE_FORMAT' }, 'a format mismatch is named even under another secret')
    await client.hset(`${prefix}canary`, 'format', '3')
    await t.rejects(new RedisStore({ client, prefix, secret }).ready(), { code: 'FST_XEMS_STORE_FORMAT', message: /format 3; this version reads format 2/ }, 'a newer format too')
    await client.hset(`${prefix}canary`, 'format', '2')
    await t.rejects(
      new RedisStore({ client, prefix, secret }).ready(), { code: 'FST_XEMS_STORE_FORMAT', message: /format 1/ },
      'a format field edited to 2 over a format-1 marker: still format 1'
    )
    await deleteUnder(client, prefix)
    const fresh = new RedisStore({ client, prefix, secret })
    await fresh.ready()
    t.equal((await client.hget(`${prefix}canary`, 'format')), '2', 'once the prefix is flushed the store claims it in format 2')
  })

  t.test('secret rotation: [new, old] opens old data and rewrites it under the new secret', async (t) => {
    const oldSecret = randomBytes(32)
    const newSecret = randomBytes(32)
    const { store: before, prefix } = scratch(t, { secret: oldSecret })
    const c = await create(before, { userId: 'u-rot', data: { a: '1', b: '"two"' } })
    await before.kvSet('reg', 'ada', '{"n":1}', HOUR, Date.now())
    const rotating = new RedisStore({ client, prefix, secret: [newSecret, oldSecret] })
    const result = await resolve(rotating, c)
    t.equal(result.status, 'live')
    if (result.status === 'live') {
      t.same({ ...result.session.data }, { a: '1', b: '"two"' })
      t.equal(result.session.userId, 'u-rot')
    }
    t.equal(await rotating.kvGet('reg', 'ada', Date.now()), '{"n":1}')
    const newId = keyIdOf(newSecret)
    const sealed = [
      ...Object.entries(await client.hgetallBuffer(sessionKey(prefix, c.id))).filter(([field]) => ['u', 'ms', 'mt'].includes(field) || field.startsWith('d:')),
      ['v', (await client.hgetBuffer((await keysUnder(client, `${prefix}v:`))[0]!, 'v'))!] as const
    ]
    t.equal(sealed.length, 6)
    for (const [field, value] of sealed) t.ok(value.subarray(1, 5).equals(newId), `${field} rewritten under the newest secret`)
    t.same(
      Object.keys(await client.hgetall(`${prefix}canary`)).sort(), [keyIdOf(oldSecret).toString('hex'), newId.toString('hex'), 'format'].sort(), 'the canary knows both secrets'
    )

    const after = new RedisStore({ client, prefix, secret: newSecret })
    await after.ready()
    const again = await resolve(after, c)
    t.equal(again.status, 'live', 'the old secret can be dropped once what it sealed was rewritten or expired')
    if (again.status === 'live') t.same({ ...again.session.data }, { a: '1', b: '"two"' })
    t.equal(await after.kvGet('reg', 'ada', Date.now()), '{"n":1}')
    t.same((await after.listUser('u-rot', Date.now())).map((info) => info.id), [c.id])
    const retired = new RedisStore({ client, prefix, secret: oldSecret })
    t.same(await resolve(retired, c), { status: 'none' }, 'a retired secret passes the canary (it wrote here) but opens nothing rewritten since')
    t.same(await retired.listUser('u-rot', Date.now()), [], 'nor lists it')
  })

  t.test('Redis expiries: one per session, never past the absolute cap, and keys vanish by themselves', async (t) => {
    const { store, prefix } = scratch(t)
    const now = Date.now()
    const capped = await create(store, { userId: 'u-ttl', idleTtl: HOUR, absolute: 30 * 60_000, now })
    const cappedTtl = await client.pttl(sessionKey(prefix, capped.id))
    t.ok(cappedTtl > 0 && cappedTtl <= 30 * 60_000, `a session expires at its absolute cap (${cappedTtl} ms)`)
    const idle = await create(store, { idleTtl: 10 * 60_000, now })
    const idleTtl = await client.pttl(sessionKey(prefix, idle.id))
    t.ok(idleTtl > 10 * 60_000 && idleTtl <= 10 * 60_000 + 75_000, `idle deadline + idleTtl/8 when the idle deadline comes first (${idleTtl} ms)`)
    t.equal((await resolve(store, idle, now + 1000)).status, 'live')
    t.equal(await client.hget(sessionKey(prefix, idle.id), 'xp'), String(now + 10 * 60_000 + 75_000), 'a use within the reach of xp does not move it…')
    t.ok(Math.abs(await client.pttl(sessionKey(prefix, idle.id)) - idleTtl) < 200, '…nor the expiry')
    t.equal((await resolve(store, idle, now + 2 * 60_000)).status, 'live')
    t.equal(await client.hget(sessionKey(prefix, idle.id), 'xp'), String(now + 12 * 60_000 + 75_000), 'a use past it pushes xp to the new deadline + idleTtl/8')
    t.equal((await resolve(store, capped, now + 20 * 60_000)).status, 'live')
    t.ok(await client.pttl(sessionKey(prefix, capped.id)) <= 30 * 60_000, 'never past the absolute cap however it is used')
    t.equal(await client.hget(sessionKey(prefix, capped.id), 'xp'), String(now + 30 * 60_000))
    const userTtl = await client.pttl(userKey(prefix, 'u-ttl'))
    t.ok(userTtl > 0 && userTtl <= 30 * 60_000, `the user index expires with its last session's absolute deadline (${userTtl} ms)`)
    await store.kvSet('s', 'k', '1', 60_000, now)
    const valueTtl = await client.pttl((await keysUnder(client, `${prefix}v:`))[0]!)
    t.ok(valueTtl > 0 && valueTtl <= 60_000, `values expire (${valueTtl} ms)`)
    await store.increment('hits', 5000, now)
    const counterTtl = await client.pttl((await keysUnder(client, `${prefix}c:`))[0]!)
    t.ok(counterTtl > 0 && counterTtl <= 5000, `counters expire with their window (${counterTtl} ms)`)
    t.equal(await client.pttl(`${prefix}canary`), -1, 'the canary is the one key without an expiry')
    const moved = newKey()
    t.equal(
      await store.migrate({
        id: capped.id,
        tokenKey: capped.key,
        from: 'auth-active',
        to: 'auth-active',
        newKey: moved,
        retiredUntil: now + WINDOW,
        data: null,
        idleTtl: 60_000,
        userId: 'u-ttl',
        now: now + 20 * 60_000
      }),
      true
    )
    const shortened = await client.pttl(sessionKey(prefix, capped.id))
    t.ok(shortened > 0 && shortened <= 60_000 + 7500, `a migration to a shorter idle lifetime shortens the expiry (${shortened} ms)`)

    const shortPrefix = newPrefix()
    const short = new RedisStore({ client, prefix: shortPrefix, secret })
    t.teardown(async () => { await deleteUnder(client, shortPrefix) })
    const brief = await create(short, { userId: 'u-brief', idleTtl: 400, absolute: 500 })
    t.equal((await resolve(short, brief)).status, 'live')
    await short.commit({ id: brief.id, tokenKey: brief.key, patch: null, rotate: { newKey: newKey(), box: newBox(), unseenWindow: 300 }, now: Date.now() })
    await short.kvSet('s', 'k', '1', 400, Date.now())
    await short.increment('c', 400, Date.now())
    t.equal((await keysUnder(client, shortPrefix)).length, 5)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    t.same(await keysUnder(client, shortPrefix), [`${shortPrefix}canary`], 'session, user index, value and counter are gone without a sweeper')
  })

  t.test('the user index is written before the session: revokeUser never misses a session that names the user', async (t) => {
    const holding = new Redis(REDIS_URL)
    holding.on('error', () => {})
    t.teardown(() => { holding.disconnect() })
    const { store, prefix } = scratch(t, { client: holding })
    await store.ready()
    const createSha = createHash('sha1').update(SCRIPTS.create).digest('hex')
    const order: string[] = []
    let held: Array<string | Buffer | number> | null = null
    const original = holding.sendCommand
    holding.sendCommand = function (this: Redis, ...args: Parameters<Redis['sendCommand']>) {
      const command = args[0]
      if (command.name === 'evalsha') order.push(String(command.args[2]))
      if (command.name === 'evalsha' && command.args[0] === createSha && held === null) {
        // The create script is "sent but stuck": the caller sees a timeout; it runs later (replay below).
        held = command.args.slice(1) as Array<string | Buffer | number>
        command.reject(new Error('Command timed out (injected)'))
        return command.promise
      }
      return original.apply(this, args)
    } as Redis['sendCommand']
    const evalScript = client.eval.bind(client) as (...args: Array<string | Buffer | number>) => Promise<unknown>
    const replay = async (): Promise<unknown> => await evalScript(SCRIPTS.create, ...held!)
    const now = Date.now()

    const locator = generateLocator()
    const id = recordIdOf(locator)
    const input = { id, sandbox: 'auth-active', tokenKey: secretKeyOf(newToken(locator)), data: { a: '1' }, userId: 'late-user', now, idleTtl: HOUR, absoluteExpiresAt: now + DAY }
    await t.rejects(store.create(input), /timed out/)
    t.same(order, [userKey(prefix, 'late-user'), sessionKey(prefix, id)], 'the index entry first, then the session')
    t.equal(await client.zscore(userKey(prefix, 'late-user'), id), String(now + DAY), 'the entry is there before the session')
    t.same(await store.listUser('late-user', now + 1), [], 'listUser does not list a session that does not exist (yet)…')
    t.equal(await client.zscore(userKey(prefix, 'late-user'), id), String(now + DAY), '…and does not drop its entry: the create may still arrive')
    t.equal(await replay(), 1, 'the stuck create arrives')
    t.same((await store.listUser('late-user', now + 2)).map((info) => info.id), [id], 'listed')
    t.equal(await store.revokeUser('late-user', now + 3), 1, 'and revoked')
    t.same(await resolveWith(store, id, input.tokenKey, now + 4), { status: 'none' })
    t.equal(await client.zcard(userKey(prefix, 'late-user')), 0, 'the entry went with the session')
    t.equal(await replay(), 0, 'a copy of the create arriving after the revocation (a resend) is born revoked')
    t.same(await resolveWith(store, id, input.tokenKey, now + 5), { status: 'none' })

    held = null
    const locator2 = generateLocator()
    const id2 = recordIdOf(locator2)
    const input2 = { ...input, id: id2, tokenKey: secretKeyOf(newToken(locator2)) }
    await t.rejects(store.create(input2), /timed out/)
    t.equal(await store.revokeUser('late-user', now + 6), 0, 'revokeUser while the create is on its way: nothing live to end…')
    t.equal(await client.zcard(userKey(prefix, 'late-user')), 0, '…the entry is dropped…')
    t.same(await client.hgetall(sessionKey(prefix, id2)), { x: '1' }, '…because the record is fenced by a tombstone')
    const fence = await client.pttl(sessionKey(prefix, id2))
    t.ok(fence > DAY - 60_000 && fence <= DAY, `for as long as that session could live (${fence} ms)`)
    t.equal(await replay(), 0, 'the create arriving afterwards is born revoked: no session the index does not know')
    t.same(await resolveWith(store, id2, input2.tokenKey, now + 7), { status: 'none' })
    holding.sendCommand = original
  })

  t.test('index entries: a session that changed user is left alone; destroy and a reuse revocation drop their entries', async (t) => {
    const { store, prefix } = scratch(t)
    const now = Date.now()
    const c = await create(store, { userId: 'first', sandbox: 'otp-pending', now })
    const moved = newKey()
    t.equal(
      await store.migrate({
        id: c.id, tokenKey: c.key, from: 'otp-pending', to: 'auth-active', newKey: moved, retiredUntil: now + WINDOW, data: null, idleTtl: HOUR, userId: 'second', now: now + 1
      }),
      true
    )
    t.equal(await client.zscore(userKey(prefix, 'second'), c.id), String(now + 1 + SESSION_LIFETIME_BOUND_MS), "the new user's entry, scored by the lifetime bound")
    t.same(await store.listUser('first', now + 2), [], 'the old user does not list it…')
    t.equal(await store.revokeUser('first', now + 3), 0, '…nor revokes it')
    t.equal((await resolveWith(store, c.id, moved, now + 4)).status, 'live')
    t.same((await store.listUser('second', now + 5)).map((info) => info.id), [c.id])

    const d = await create(store, { userId: 'leaver', now })
    t.equal(await store.destroy(d.id), true)
    t.equal(await client.exists(userKey(prefix, 'leaver')), 0, 'destroy drops the index entry (the index key with it)')

    const r = await create(store, { userId: 'robbed', now })
    t.equal((await resolveWith(store, r.id, r.key, now)).status, 'live')
    const next = newKey()
    await store.commit({ id: r.id, tokenKey: r.key, patch: null, rotate: { newKey: next, box: newBox(), unseenWindow: WINDOW }, now })
    t.equal((await resolveWith(store, r.id, next, now + 1)).status, 'live')
    t.match(await resolveWith(store, r.id, r.key, now + 5000), { status: 'reused', revoked: true, userId: 'robbed' })
    t.equal(await client.exists(userKey(prefix, 'robbed')), 0, 'a reuse revocation drops it too')
  })

  t.test('a script that ran although its caller saw a failure (outcome unknown), or ran twice, leaves a usable session', async (t) => {
    const { store } = scratch(t)
    const now = Date.now()
    const c = await create(store, { sandbox: 'otp-pending' })
    t.equal((await resolve(store, c, now)).status, 'live')
    const box = newBox()
    const next = newKey()
    const input = { id: c.id, tokenKey: c.key, patch: { a: '2' }, rotate: { newKey: next, box, unseenWindow: WINDOW }, now }
    t.same(await store.commit(input), { status: 'ok', rotated: true, expiresAt: now + HOUR }, 'a commit whose answer the caller never saw…')
    t.same(
      await store.commit(input), { status: 'ok', rotated: false, chain: [box], expiresAt: now + HOUR }, '…sent again: no second rotation, the way to the token the first one made'
    )
    const grace = await resolve(store, c, now + 60_000)
    t.equal(grace.status, 'grace', 'the client still holding the old token is answered with the new one (it never saw it)')
    if (grace.status === 'grace') t.same(grace.chain, [box])
    const active = newKey()
    const migration = {
      id: c.id, tokenKey: c.key, from: 'otp-pending', to: 'auth-active', newKey: active, retiredUntil: now + WINDOW, data: null, idleTtl: HOUR, now: now + 60_001
    }
    t.equal(await store.migrate(migration), true)
    t.equal(await store.migrate(migration), true, 'a migration sent twice reports the success of its first run (its own new key is current)')
    t.equal(await store.migrate({ ...migration, newKey: newKey() }), false, 'another migration with the retired token still loses')
    const live = await resolveWith(store, c.id, active, now + 60_002, 'auth-active')
    t.equal(live.status, 'live')
    if (live.status === 'live') t.equal(live.session.data.a, '2')
  })

  t.test('a client that cannot reach Redis makes operations reject promptly', async (t) => {
    const dead = new Redis({ host: '127.0.0.1', port: 1, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 1000 })
    dead.on('error', () => {})
    t.teardown(() => { dead.disconnect() })
    const store = new RedisStore({ client: dead, secret })
    const started = Date.now()
    await t.rejects(store.ready())
    await t.rejects(resolveWith(store, recordIdOf(generateLocator()), newKey()))
    await t.rejects(store.commit({ id: 'x', tokenKey: 'y', patch: null, rotate: null, now: Date.now() }))
    await t.rejects(store.kvGet('s', 'k', Date.now()))
    t.ok(Date.now() - started < 1000, `rejected in ${Date.now() - started} ms`)
    const { XemsEngine } = await import('../../lib/session/engine.js')
    const engine = new XemsEngine({ store })
    await t.rejects(engine.open(newToken()), { code: 'FST_XEMS_STORE_UNAVAILABLE', statusCode: 503 })

    const queued = new Redis({ host: '127.0.0.1', port: 1, commandTimeout: 300, maxRetriesPerRequest: 1 })
    queued.on('error', () => {})
    t.teardown(() => { queued.disconnect() })
    const timed = new RedisStore({ client: queued, secret })
    const start = Date.now()
    await t.rejects(resolveWith(timed, recordIdOf(generateLocator()), newKey()))
    t.ok(Date.now() - start < 1500, `with the offline queue on, commandTimeout bounds the wait (${Date.now() - start} ms)`)
  })

  t.test('a client with an ioredis keyPrefix works, every key under it', async (t) => {
    const keyPrefix = `kp-${randomBytes(4).toString('hex')}:`
    const prefixed = new Redis(REDIS_URL, { keyPrefix })
    prefixed.on('error', () => {})
    t.teardown(async () => {
      prefixed.disconnect()
      await deleteUnder(client, keyPrefix)
    })
    const store = new RedisStore({ client: prefixed, secret })
    const now = Date.now()
    const c = await create(store, { userId: 'kp-user', now })
    t.equal((await resolve(store, c, now)).status, 'live')
    const next = newKey()
    const box = newBox()
    t.same(
      await store.commit({ id: c.id, tokenKey: c.key, patch: { x: '1' }, rotate: { newKey: next, box, unseenWindow: WINDOW }, now }),
      { status: 'ok', rotated: true, expiresAt: now + HOUR }
    )
    const grace = await resolve(store, c, now + 1)
    t.equal(grace.status, 'grace')
    if (grace.status === 'grace') t.same(grace.chain, [box])
    t.equal((await store.listUser('kp-user', now + 2)).length, 1)
    await store.kvSet('s', 'k', '"v"', HOUR, now)
    t.equal(await store.kvGet('s', 'k', now), '"v"')
    const all = await keysUnder(client, keyPrefix)
    t.ok(all.length >= 4 && all.every((name) => name.startsWith(`${keyPrefix}xems:`)), 'every key carries the client keyPrefix')
    t.ok(all.includes(`${keyPrefix}xems:s:{${c.id}}`))
    t.equal(await store.revokeUser('kp-user', now + 3), 1)
    t.same(await resolveWith(store, c.id, next, now + 4), { status: 'none' })
    t.same((await keysUnder(client, keyPrefix)).filter((name) => name.includes('u:{')), [], 'revocation emptied the user index')
  })

  t.test('thousands of data keys go through create, commit and migrate (no Lua unpack limit)', async (t) => {
    const { store } = scratch(t)
    const many = (n: number, tag: string): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${tag}${i}`, String(i)]))
    const now = Date.now()
    const c = await create(store, { data: many(6000, 'a'), now })
    const patch: Record<string, string | null> = { ...many(6000, 'b') }
    for (let i = 0; i < 6000; i++) patch[`a${i}`] = null
    const committed = await store.commit({ id: c.id, tokenKey: c.key, patch, rotate: null, now })
    t.equal(committed.status, 'ok')
    const result = await resolve(store, c, now)
    t.same(result.status === 'live' ? Object.keys(result.session.data).sort() : null, Object.keys(many(6000, 'b')).sort())
    const moved = newKey()
    t.equal(
      await store.migrate({
        id: c.id, tokenKey: c.key, from: 'auth-active', to: 'auth-active', newKey: moved, retiredUntil: now + WINDOW, data: many(3000, 'c'), idleTtl: HOUR, now
      }),
      true
    )
    const after = await resolveWith(store, c.id, moved, now)
    t.equal(after.status === 'live' ? Object.keys(after.session.data).length : -1, 3000)
  })

  t.test('close() stops the store but leaves the client open', async (t) => {
    const { store } = scratch(t)
    await store.close()
    await t.rejects(store.kvGet('s', 'k', Date.now()), { code: 'FST_XEMS_STORE_CLOSED' })
    t.equal(await client.ping(), 'PONG')
  })

  const cluster = clusterFromEnv()
  // .ci/run starts a three-master cluster and sets REDIS_CLUSTER_NODES: under CI a missing cluster fails.
  const noCluster = cluster === undefined && process.env.CI === undefined ? 'set REDIS_CLUSTER_NODES=host:port,... to run it' : false
  if (cluster !== undefined) t.teardown(() => { cluster.disconnect() })
  if (cluster === undefined && process.env.CI !== undefined) {
    t.fail('CI is set but REDIS_CLUSTER_NODES is not: .ci/run starts a Redis Cluster on 127.0.0.1:7101-7103 for these tests')
  }

  if (cluster !== undefined || noCluster !== false) {
    t.test('RedisStore passes the conformance suite on a Redis Cluster', { skip: noCluster }, async (t) => {
      runStoreConformance(t, async () => {
        const prefix = newPrefix()
        const store = new RedisStore({ client: cluster!, prefix, secret })
        return {
          store,
          cleanup: async () => {
            await store.close()
            await deleteUnderCluster(cluster!, prefix)
          }
        }
      })
    })
  }

  if (cluster !== undefined || noCluster !== false) {
    t.test('on a Redis Cluster, 3000 sessions spread over every master (each holds 20 % to 47 %)', { skip: noCluster }, async (t) => {
      const prefix = newPrefix()
      const store = new RedisStore({ client: cluster as Cluster, prefix, secret })
      t.teardown(async () => { await deleteUnderCluster(cluster!, prefix) })
      const now = Date.now()
      const created: Created[] = []
      for (let batch = 0; batch < 15; batch++) {
        created.push(...await Promise.all(Array.from({ length: 200 }, async (_, i) => await create(store, { now, userId: `spread-${(batch * 200 + i) % 100}` }))))
      }
      const masters = cluster!.nodes('master')
      t.ok(masters.length >= 3, `${masters.length} masters`)
      const counts = await Promise.all(masters.map(async (node) => (await keysUnder(node, `${prefix}s:`)).length))
      t.equal(counts.reduce((a, b) => a + b, 0), 3000, 'every session is one key')
      const shares = counts.map((count) => count / 3000)
      t.comment(`sessions per master: ${counts.join(', ')} (${shares.map((share) => (share * 100).toFixed(1) + ' %').join(', ')})`)
      for (const [i, share] of shares.entries()) t.ok(share >= 0.2 && share <= 0.47, `master ${i + 1} holds ${(share * 100).toFixed(1)} %`)
      const users = await Promise.all(masters.map(async (node) => (await keysUnder(node, `${prefix}u:`)).length))
      t.ok(users.filter((count) => count > 0).length >= 2, `user indexes spread too (${users.join(', ')})`)
      const sample = created.filter((_, i) => i % 100 === 0)
      for (const c of sample) t.equal((await resolve(store, c, now + 1)).status, 'live')
      t.equal(await store.revokeUser('spread-7', now + 2), 30, 'revokeUser reaches sessions on every master')
      t.same(await store.listUser('spread-7', now + 3), [])
      t.equal((await store.listUser('spread-8', now + 3)).length, 30)
    })
  }
}
