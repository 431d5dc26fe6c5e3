/**
 * RedisStore against a real Redis (REDIS_URL, default redis://127.0.0.1:6379): the conformance suite,
 * unchanged, then what only Redis has: sealing, placement binding, secrets and their rotation, Redis
 * expiries, round trips, failure behaviour. Each test works under its own random prefix and deletes its
 * keys. Without Redis the file skips, unless CI is set: then it fails.
 * Set REDIS_CLUSTER_NODES (host:port,host:port,...) to run the conformance suite on a Redis Cluster too.
 */
import { randomBytes } from 'node:crypto'
import { Cluster, Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { Keyring } from '../../lib/cipher.js'
import { XemsEngine } from '../../lib/engine.js'
import type { SessionStore } from '../../lib/store/contract.js'
import { REDIS_SEAL_PURPOSE, RedisStore } from '../../lib/store/redis-store.js'
import { generateSessionId, generateToken, tokenKey } from '../../lib/token.js'
import { runStoreConformance } from './conformance.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const IN_CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false' && process.env.CI !== '0'
const HOUR = 3_600_000
const DAY = 24 * HOUR

/** A connected client, or why there is none. */
async function connect (): Promise<Redis | string> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 1, retryStrategy: (times) => times > 2 ? null : 100 })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
    return client
  } catch (err) {
    client.disconnect()
    return `Redis is not reachable at ${REDIS_URL} (${(err as Error).message})`
  }
}

function newPrefix (): string {
  return `xems-test:${randomBytes(6).toString('hex')}:`
}

async function keysUnder (client: Redis, prefix: string): Promise<string[]> {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    found.push(...keys)
    cursor = next
  } while (cursor !== '0')
  return found
}

async function deleteUnder (client: Redis, prefix: string): Promise<void> {
  const keys = await keysUnder(client, prefix)
  if (keys.length > 0) await client.del(...keys)
}

/** Everything stored under a prefix: key names, hash fields and values, set members. */
async function dump (client: Redis, prefix: string): Promise<Array<{ key: string, field: string, value: Buffer }>> {
  const entries: Array<{ key: string, field: string, value: Buffer }> = []
  for (const key of await keysUnder(client, prefix)) {
    const type = await client.type(key)
    if (type === 'hash') {
      for (const [field, value] of Object.entries(await client.hgetallBuffer(key))) entries.push({ key, field, value })
    } else if (type === 'set') {
      for (const member of await client.smembersBuffer(key)) entries.push({ key, field: '', value: member })
    } else {
      entries.push({ key, field: '', value: await client.getBuffer(key) ?? Buffer.alloc(0) })
    }
  }
  return entries
}

function keyIdOf (secret: Buffer): Buffer {
  return new Keyring([secret], REDIS_SEAL_PURPOSE).seal('', 'id').subarray(1, 5)
}

async function create (store: SessionStore, options: { sandbox?: string, userId?: string, data?: Record<string, string>, now?: number, idleTtl?: number, absolute?: number } = {}): Promise<{ sid: string, key: string, token: string }> {
  const sid = generateSessionId()
  const token = generateToken()
  const now = options.now ?? Date.now()
  await store.create({
    sid,
    sandbox: options.sandbox ?? 'auth-active',
    tokenKey: tokenKey(token),
    data: options.data ?? { user: '"ada"' },
    now,
    idleTtl: options.idleTtl ?? HOUR,
    absoluteExpiresAt: now + (options.absolute ?? 5 * DAY),
    ...(options.userId === undefined ? {} : { userId: options.userId })
  })
  return { sid, key: tokenKey(token), token }
}

const connected = await connect()
if (typeof connected === 'string') {
  if (IN_CI) t.fail(`${connected}: CI is set, so the RedisStore tests must run (start Redis or set REDIS_URL)`)
  else t.plan(0, `${connected}: start Redis or set REDIS_URL to run the RedisStore tests`)
} else {
  const client = connected
  t.teardown(async () => { await client.quit() })
  const secret = randomBytes(32)

  /** A store under a fresh prefix; its keys are deleted when the test ends. */
  function scratch (t: Test, options: { secret?: Buffer | Buffer[], prefix?: string } = {}): { store: RedisStore, prefix: string } {
    const prefix = options.prefix ?? newPrefix()
    const store = new RedisStore({ client, prefix, secret: options.secret ?? secret })
    t.teardown(async () => {
      await store.close()
      await deleteUnder(client, prefix)
    })
    return { store, prefix }
  }

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
    t.equal(new RedisStore({ client, secret }).prefix, 'xems:', 'default prefix')
    t.ok(new RedisStore({ client, secret: secret.toString('hex'), prefix: 'app/sessions:' }), 'hex secret, custom prefix')
  })

  t.test('each operation is one round trip (one EVALSHA, or a single command)', async (t) => {
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
    const roundTrips = async (what: string, operation: () => Promise<unknown>): Promise<void> => {
      sent.length = 0
      await operation()
      t.equal(sent.length, 1, `${what}: 1 round trip (${sent.join(', ')})`)
    }
    const now = Date.now()
    const sid = generateSessionId()
    const first = tokenKey(generateToken())
    const second = tokenKey(generateToken())
    await roundTrips('create', async () => await store.create({ sid, sandbox: 'otp-pending', tokenKey: first, data: { a: '1', b: '2' }, userId: 'u1', now, idleTtl: HOUR, absoluteExpiresAt: now + DAY }))
    await roundTrips('resolve (live)', async () => await store.resolve({ tokenKey: first, now, revokeOnReuse: true }))
    await roundTrips('commit (patch + rotate)', async () => await store.commit({ sid, tokenKey: first, patch: { a: '3', b: null, c: '4' }, rotate: { newKey: second, box: 'box', graceUntil: now + 2000 }, now }))
    await roundTrips('resolve (grace, with chain)', async () => await store.resolve({ tokenKey: first, now: now + 1, revokeOnReuse: true }))
    await roundTrips('commit (late: patch, chain)', async () => await store.commit({ sid, tokenKey: first, patch: { d: '5' }, rotate: { newKey: tokenKey(generateToken()), box: 'x', graceUntil: now + 2000 }, now: now + 2 }))
    await roundTrips('listUser', async () => await store.listUser('u1', now + 3))
    await roundTrips('migrate', async () => await store.migrate({ sid, from: 'otp-pending', to: 'auth-active', newKey: tokenKey(generateToken()), data: null, idleTtl: HOUR, userId: 'u2', now: now + 4 }))
    await roundTrips('destroy', async () => await store.destroy(sid))
    await roundTrips('revokeUser', async () => await store.revokeUser('u2', now + 5))
    await roundTrips('kvSet', async () => await store.kvSet('s', 'k', '"v"', 1000, now))
    await roundTrips('kvGet', async () => await store.kvGet('s', 'k', now))
    await roundTrips('kvAdd', async () => await store.kvAdd('s', 'k2', '"v"', 1000, now))
    await roundTrips('kvTake', async () => await store.kvTake('s', 'k2', now))
    await roundTrips('kvDel', async () => await store.kvDel('s', 'k'))
    await roundTrips('increment', async () => await store.increment('c', 1000, now))
    await roundTrips('resetCounter', async () => await store.resetCounter('c'))
    counted.sendCommand = original
  })

  t.test('nothing readable reaches Redis but what docs/stores.md lists', async (t) => {
    const { store, prefix } = scratch(t)
    const marker = `plain-${randomBytes(8).toString('hex')}`
    const { sid, key, token } = await create(store, {
      userId: `${marker}-user@example.com`,
      data: { [`${marker}-datakey`]: JSON.stringify(`${marker}-session-value`), note: JSON.stringify(`${marker}-note`) }
    })
    const next = tokenKey(generateToken())
    await store.commit({ sid, tokenKey: key, patch: { more: JSON.stringify(`${marker}-patched`) }, rotate: { newKey: next, box: 'opaque-box', graceUntil: Date.now() + 2000 }, now: Date.now() })
    await store.kvSet('users-registry', `${marker}-kv-key`, JSON.stringify(`${marker}-kv-value`), HOUR, Date.now())
    await store.increment(`${marker}-counter-key`, HOUR, Date.now())
    const entries = await dump(client, prefix)
    t.ok(entries.length > 0)
    const everything = Buffer.concat(entries.flatMap((entry) => [Buffer.from(entry.key), Buffer.from(entry.field), entry.value]))
    t.equal(everything.indexOf(marker), -1, 'no session data, data key name, user id, value, value key or counter key in clear')
    t.equal(everything.indexOf(token), -1, 'never the token')
    t.equal(everything.indexOf(token.slice(0, 12)), -1, 'not even a piece of it')
    for (const tk of [key, next]) {
      for (const entry of entries) {
        if (entry.key.includes(tk)) t.equal(entry.key, `${prefix}{${prefix}}t:${tk}`, 'a token key names its own entry')
        if (entry.value.includes(tk)) t.ok(['cur', 'rot', 'nk'].includes(entry.field), `token key held only in documented fields (${entry.field})`)
      }
    }
    const session = await client.hgetall(`${prefix}{${prefix}}s:${sid}`)
    t.same(Object.keys(session).filter((field) => !field.startsWith('d:')).sort(), ['ax', 'ca', 'cur', 'it', 'ls', 'ms', 'mt', 'rot', 'sb', 'u', 'uk', 'xp'], 'the documented session fields')
    t.equal(session.sb, 'auth-active', 'the sandbox is readable (Lua compares it)')
    t.equal(Object.keys(session).filter((field) => field.startsWith('d:')).length, 3, 'one sealed field per top-level data key')
  })

  t.test('a value moved to another place does not open; a tampered one is absent', async (t) => {
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

    const a = await create(store, { data: { role: '"admin"' } })
    const b = await create(store, { data: { role: '"guest"' } })
    const field = Object.keys(await client.hgetall(`${prefix}{${prefix}}s:${a.sid}`)).find((f) => f.startsWith('d:'))!
    await client.hset(`${prefix}{${prefix}}s:${b.sid}`, field, (await client.hgetBuffer(`${prefix}{${prefix}}s:${a.sid}`, field))!)
    t.same(await store.resolve({ tokenKey: b.key, now: Date.now(), revokeOnReuse: true }), { status: 'none' }, "a's data field copied into b's session: b is not trusted")
    t.equal((await store.resolve({ tokenKey: a.key, now: Date.now(), revokeOnReuse: true })).status, 'live', 'a still resolves')

    const pending = await create(store, { sandbox: 'otp-pending' })
    await client.hset(`${prefix}{${prefix}}s:${pending.sid}`, 'sb', 'auth-active')
    t.same(await store.resolve({ tokenKey: pending.key, sandbox: 'auth-active', now: Date.now(), revokeOnReuse: true }), { status: 'none' }, 'a sandbox edited in Redis (MFA skipped) does not resolve')
    const capped = await create(store)
    await client.hset(`${prefix}{${prefix}}s:${capped.sid}`, 'ax', String(Date.now() + 30 * DAY))
    t.same(await store.resolve({ tokenKey: capped.key, now: Date.now(), revokeOnReuse: true }), { status: 'none' }, 'an absolute cap edited in Redis does not resolve')

    const victim = await create(store, { data: { secret: '"victim"' } })
    const attacker = await create(store)
    await client.hset(`${prefix}{${prefix}}t:${attacker.key}`, 'sid', victim.sid)
    await client.hset(`${prefix}{${prefix}}s:${victim.sid}`, 'cur', attacker.key)
    t.same(await store.resolve({ tokenKey: attacker.key, now: Date.now(), revokeOnReuse: true }), { status: 'none' }, 'a token entry re-pointed at another session does not open it')
  })

  t.test('a wrong secret fails loudly with FST_XEMS_BAD_SECRET', async (t) => {
    const { store, prefix } = scratch(t)
    const { key } = await create(store)
    const wrong = new RedisStore({ client, prefix, secret: randomBytes(32) })
    await t.rejects(wrong.ready(), { code: 'FST_XEMS_BAD_SECRET', message: /option "secret" does not open the data under prefix/ })
    await t.rejects(wrong.resolve({ tokenKey: key, now: Date.now(), revokeOnReuse: true }), { code: 'FST_XEMS_BAD_SECRET' })
    await t.rejects(wrong.kvGet('s', 'k', Date.now()), { code: 'FST_XEMS_BAD_SECRET' })
    const engine = new XemsEngine({ store: wrong })
    await t.rejects(engine.open(generateToken()), { code: 'FST_XEMS_BAD_SECRET' }, 'the engine passes it through (not a 503)')
    t.equal((await store.resolve({ tokenKey: key, now: Date.now(), revokeOnReuse: true })).status, 'live', 'the right secret still works')
    const canary = await client.hgetallBuffer(`${prefix}canary`)
    const field = Object.keys(canary)[0]!
    const sealed = canary[field]!
    sealed[sealed.length - 1]! ^= 1
    await client.hset(`${prefix}canary`, field, sealed)
    await t.rejects(new RedisStore({ client, prefix, secret }).ready(), { code: 'FST_XEMS_BAD_SECRET', message: /tampered/ })
  })

  t.test('secret rotation: [new, old] opens old data and rewrites it under the new secret', async (t) => {
    const oldSecret = randomBytes(32)
    const newSecret = randomBytes(32)
    const { store: before, prefix } = scratch(t, { secret: oldSecret })
    const { sid, key } = await create(before, { userId: 'u-rot', data: { a: '1', b: '"two"' } })
    await before.kvSet('reg', 'ada', '{"n":1}', HOUR, Date.now())
    const rotating = new RedisStore({ client, prefix, secret: [newSecret, oldSecret] })
    const result = await rotating.resolve({ tokenKey: key, now: Date.now(), revokeOnReuse: true })
    t.equal(result.status, 'live')
    if (result.status === 'live') {
      t.same({ ...result.session.data }, { a: '1', b: '"two"' })
      t.equal(result.session.userId, 'u-rot')
    }
    t.equal(await rotating.kvGet('reg', 'ada', Date.now()), '{"n":1}')
    const newId = keyIdOf(newSecret)
    const sealed = [
      ...Object.entries(await client.hgetallBuffer(`${prefix}{${prefix}}s:${sid}`)).filter(([field]) => ['u', 'ms', 'mt'].includes(field) || field.startsWith('d:')),
      ['tm', (await client.hgetBuffer(`${prefix}{${prefix}}t:${key}`, 'tm'))!] as const,
      ['v', (await client.hgetBuffer((await keysUnder(client, `${prefix}v:`))[0]!, 'v'))!] as const
    ]
    t.equal(sealed.length, 7)
    for (const [field, value] of sealed) t.ok(value.subarray(1, 5).equals(newId), `${field} rewritten under the newest secret`)
    t.same(Object.keys(await client.hgetall(`${prefix}canary`)).sort(), [keyIdOf(oldSecret).toString('hex'), newId.toString('hex')].sort(), 'the canary knows both secrets')

    const after = new RedisStore({ client, prefix, secret: newSecret })
    await after.ready()
    const again = await after.resolve({ tokenKey: key, now: Date.now(), revokeOnReuse: true })
    t.equal(again.status, 'live', 'the old secret can be dropped once what it sealed was rewritten or expired')
    if (again.status === 'live') t.same({ ...again.session.data }, { a: '1', b: '"two"' })
    t.equal(await after.kvGet('reg', 'ada', Date.now()), '{"n":1}')
    const retired = new RedisStore({ client, prefix, secret: oldSecret })
    t.same(await retired.resolve({ tokenKey: key, now: Date.now(), revokeOnReuse: true }), { status: 'none' }, 'a retired secret passes the canary (it wrote here) but opens nothing rewritten since')
  })

  t.test('Redis expiries are set, never past the absolute cap, and keys vanish by themselves', async (t) => {
    const { store, prefix } = scratch(t)
    const base = `${prefix}{${prefix}}`
    const now = Date.now()
    const capped = await create(store, { userId: 'u-ttl', idleTtl: HOUR, absolute: 30 * 60_000, now })
    for (const name of [`${base}s:${capped.sid}`, `${base}t:${capped.key}`]) {
      const ttl = await client.pttl(name)
      t.ok(ttl > 0 && ttl <= 30 * 60_000, `${name.slice(base.length, base.length + 2)} expires at the absolute cap (${ttl} ms)`)
    }
    const idle = await create(store, { idleTtl: 10 * 60_000, now })
    const idleTtl = await client.pttl(`${base}s:${idle.sid}`)
    t.ok(idleTtl > 10 * 60_000 && idleTtl <= 10 * 60_000 + 75_000, `idle deadline + idleTtl/8 when the idle deadline comes first (${idleTtl} ms)`)
    const next = tokenKey(generateToken())
    await store.commit({ sid: capped.sid, tokenKey: capped.key, patch: null, rotate: { newKey: next, box: 'b', graceUntil: now + 2000 }, now: Date.now() })
    const [sessionTtl, tombstone, current] = await Promise.all([`${base}s:${capped.sid}`, `${base}t:${capped.key}`, `${base}t:${next}`].map(async (name) => await client.pttl(name)))
    t.ok(tombstone! > 0 && tombstone! <= 30 * 60_000, `a rotated token's tombstone expires... (${tombstone} ms)`)
    t.ok(Math.abs(tombstone! - sessionTtl!) < 100 && Math.abs(current! - sessionTtl!) < 100, `...with its session, as does the new token (${sessionTtl}, ${tombstone}, ${current} ms)`)
    const users = (await keysUnder(client, `${base}u:`))
    t.equal(users.length, 1)
    const userTtl = await client.pttl(users[0]!)
    t.ok(userTtl > 0 && userTtl <= 30 * 60_000, `the user index expires with its last session (${userTtl} ms)`)
    await store.kvSet('s', 'k', '1', 60_000, now)
    const valueTtl = await client.pttl((await keysUnder(client, `${prefix}v:`))[0]!)
    t.ok(valueTtl > 0 && valueTtl <= 60_000, `values expire (${valueTtl} ms)`)
    await store.increment('hits', 5000, now)
    const counterTtl = await client.pttl((await keysUnder(client, `${prefix}c:`))[0]!)
    t.ok(counterTtl > 0 && counterTtl <= 5000, `counters expire with their window (${counterTtl} ms)`)
    t.equal(await client.pttl(`${prefix}canary`), -1, 'the canary is the one key without an expiry')

    const shortPrefix = newPrefix()
    const short = new RedisStore({ client, prefix: shortPrefix, secret })
    t.teardown(async () => { await deleteUnder(client, shortPrefix) })
    const brief = await create(short, { userId: 'u-brief', idleTtl: 400 })
    await short.commit({ sid: brief.sid, tokenKey: brief.key, patch: null, rotate: { newKey: tokenKey(generateToken()), box: 'b', graceUntil: Date.now() + 100 }, now: Date.now() })
    await short.kvSet('s', 'k', '1', 400, Date.now())
    await short.increment('c', 400, Date.now())
    t.ok((await keysUnder(client, shortPrefix)).length >= 6)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    t.same(await keysUnder(client, shortPrefix), [`${shortPrefix}canary`], 'session, tokens, user index, value and counter are gone without a sweeper')
  })

  t.test('a client that cannot reach Redis makes operations reject promptly', async (t) => {
    const dead = new Redis({ host: '127.0.0.1', port: 1, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 1000 })
    dead.on('error', () => {})
    t.teardown(() => { dead.disconnect() })
    const store = new RedisStore({ client: dead, secret })
    const started = Date.now()
    await t.rejects(store.ready())
    await t.rejects(store.resolve({ tokenKey: tokenKey(generateToken()), now: Date.now(), revokeOnReuse: true }))
    await t.rejects(store.commit({ sid: 'x', tokenKey: 'y', patch: null, rotate: null, now: Date.now() }))
    await t.rejects(store.kvGet('s', 'k', Date.now()))
    t.ok(Date.now() - started < 1000, `rejected in ${Date.now() - started} ms`)
    const engine = new XemsEngine({ store })
    await t.rejects(engine.open(generateToken()), { code: 'FST_XEMS_STORE_UNAVAILABLE', statusCode: 503 })

    const queued = new Redis({ host: '127.0.0.1', port: 1, commandTimeout: 300, maxRetriesPerRequest: 1 })
    queued.on('error', () => {})
    t.teardown(() => { queued.disconnect() })
    const timed = new RedisStore({ client: queued, secret })
    const start = Date.now()
    await t.rejects(timed.resolve({ tokenKey: tokenKey(generateToken()), now: Date.now(), revokeOnReuse: true }))
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
    const { sid, key } = await create(store, { userId: 'kp-user', now })
    const next = tokenKey(generateToken())
    t.same(await store.commit({ sid, tokenKey: key, patch: { x: '1' }, rotate: { newKey: next, box: 'b', graceUntil: now + 2000 }, now }), { status: 'ok', rotated: true, expiresAt: now + HOUR })
    const grace = await store.resolve({ tokenKey: key, now: now + 1, revokeOnReuse: true })
    t.equal(grace.status, 'grace')
    if (grace.status === 'grace') t.same(grace.chain, ['b'])
    t.equal((await store.listUser('kp-user', now + 2)).length, 1)
    await store.kvSet('s', 'k', '"v"', HOUR, now)
    t.equal(await store.kvGet('s', 'k', now), '"v"')
    const all = await keysUnder(client, keyPrefix)
    t.ok(all.length >= 6 && all.every((name) => name.startsWith(`${keyPrefix}xems:`)), 'every key carries the client keyPrefix')
    t.equal(await store.revokeUser('kp-user', now + 3), 1)
    t.same(await store.resolve({ tokenKey: next, now: now + 4, revokeOnReuse: true }), { status: 'none' })
    t.same((await keysUnder(client, keyPrefix)).filter((name) => name.includes('{')), [], 'revocation removed every session key, including the user index')
  })

  t.test('thousands of data keys go through create, commit and migrate (no Lua unpack limit)', async (t) => {
    const { store } = scratch(t)
    const many = (n: number, tag: string): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${tag}${i}`, String(i)]))
    const now = Date.now()
    const { sid, key } = await create(store, { data: many(6000, 'a'), now })
    const patch: Record<string, string | null> = { ...many(6000, 'b') }
    for (let i = 0; i < 6000; i++) patch[`a${i}`] = null
    const committed = await store.commit({ sid, tokenKey: key, patch, rotate: null, now })
    t.equal(committed.status, 'ok')
    const result = await store.resolve({ tokenKey: key, now, revokeOnReuse: true })
    t.same(result.status === 'live' ? Object.keys(result.session.data).sort() : null, Object.keys(many(6000, 'b')).sort())
    const moved = tokenKey(generateToken())
    t.equal(await store.migrate({ sid, from: 'auth-active', to: 'auth-active', newKey: moved, data: many(3000, 'c'), idleTtl: HOUR, now }), true)
    const after = await store.resolve({ tokenKey: moved, now, revokeOnReuse: true })
    t.equal(after.status === 'live' ? Object.keys(after.session.data).length : -1, 3000)
  })

  t.test('close() stops the store but leaves the client open', async (t) => {
    const { store } = scratch(t)
    await store.close()
    await t.rejects(store.kvGet('s', 'k', Date.now()), { code: 'FST_XEMS_STORE_CLOSED' })
    t.equal(await client.ping(), 'PONG')
  })

  const clusterNodes = process.env.REDIS_CLUSTER_NODES
  t.test('RedisStore passes the conformance suite on a Redis Cluster', { skip: clusterNodes === undefined ? 'set REDIS_CLUSTER_NODES=host:port,... to run it' : false }, async (t) => {
    const nodes = clusterNodes!.split(',').map((node) => {
      const [host, port] = node.split(':')
      return { host: host!, port: Number(port) }
    })
    const cluster = new Cluster(nodes)
    cluster.on('error', () => {})
    t.teardown(() => { cluster.disconnect() })
    runStoreConformance(t, async () => {
      const prefix = newPrefix()
      const store = new RedisStore({ client: cluster, prefix, secret })
      return {
        store,
        cleanup: async () => {
          await store.close()
          for (const node of cluster.nodes('master')) {
            const keys = await keysUnder(node, prefix)
            for (const name of keys) await node.del(name)
          }
        }
      }
    })
  })
}
