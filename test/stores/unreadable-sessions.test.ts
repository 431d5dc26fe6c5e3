/**
 * A session whose sealed binding no longer opens (tampered with, or sealed under a secret the store no
 * longer has) gets the same answers from RedisStore and PostgresStore: the token state decides what a
 * token is (current, retired by a migration, reused), and the seals guard only what a resolve hands out.
 * So a retired token is answered `retired` (a logout with it keeps the cookie, as on a readable
 * session), a reused one is the theft signal and ends the record, a current one resolves to no session,
 * and a logout with the current token ends the record. A session whose token state is damaged resolves
 * for no token, and a logout with any of its tokens ends it. MemoryStore keeps nothing sealed in memory: there
 * is nothing to tamper with. Without Redis or PostgreSQL the store's part skips, unless CI is set: then
 * it fails.
 */
import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { successorOf } from '../../lib/crypto/cipher.js'
import { generateToken } from '../../lib/crypto/random-token.js'
import { generateLocator, recordIdOf, secretKeyOf, sessionTokenOf } from '../../lib/session/token.js'
import type { SessionStore } from '../../lib/store/contract.js'
import { PostgresStore } from '../../lib/store/postgres/postgres-store.js'
import { RedisStore } from '../../lib/store/redis/redis-store.js'
import { connectPool, dropSchema, newSchema } from '../postgres/pg-helpers.js'
import { connect, deleteUnder, IN_CI, newPrefix } from '../redis/redis-helpers.js'

const HOUR = 3_600_000
const GRACE = 2000
const WINDOW = 600_000

/** A store with a way to break one session's binding seal and to tell whether its record is still there. */
interface Subject {
  store: SessionStore
  breakBinding: (id: string) => Promise<void>
  breakTokenState: (id: string) => Promise<void>
  exists: (id: string) => Promise<boolean>
}

const newKey = (locator: string): string => secretKeyOf(sessionTokenOf(locator, generateToken()))

/** A new session in auth-pending, with its first token (not yet presented). */
async function open (store: SessionStore, now: number): Promise<{ id: string, locator: string, key: string }> {
  const locator = generateLocator()
  const id = recordIdOf(locator)
  const key = newKey(locator)
  await store.create({ id, sandbox: 'auth-pending', tokenKey: key, data: { user: '"ada"' }, now, idleTtl: HOUR, absoluteExpiresAt: now + 5 * 24 * HOUR })
  return { id, locator, key }
}

/** Moves the session from auth-pending to auth-active under `newKey`: its earlier token is retired for 10 s. */
const migrate = async (store: SessionStore, s: { id: string, key: string }, newKey: string, now: number) =>
  await store.migrate({ id: s.id, tokenKey: s.key, from: 'auth-pending', to: 'auth-active', newKey, retiredUntil: now + 10_000, data: null, idleTtl: HOUR, now })

const resolve = async (store: SessionStore, id: string, tokenKey: string, now: number) =>
  await store.resolve({ id, tokenKey, now, gracePeriod: GRACE, revokeOnReuse: true })

async function cases (t: Test, subject: () => Promise<Subject>): Promise<void> {
  await t.test('a damaged token state: no token resolves it, and a logout with any of its tokens ends it', async (t) => {
    const { store, breakTokenState, exists } = await subject()
    const now = Date.now()
    const s = await open(store, now)
    const moved = newKey(s.locator)
    t.equal(await migrate(store, s, moved, now), true)
    await breakTokenState(s.id)
    t.same(await resolve(store, s.id, moved, now + 1), { status: 'none' }, 'the current token')
    t.same(await resolve(store, s.id, s.key, now + 2), { status: 'none' }, 'the retired one')
    t.equal(await store.destroy(s.id, { tokenKey: s.key, migrations: 0, now: now + 3 }), true, 'a logout with the retired token ends it')
    t.notOk(await exists(s.id), 'the record is gone')
  })

  await t.test('a token a migration retired: retired, and a logout with it changes nothing', async (t) => {
    const { store, breakBinding, exists } = await subject()
    const now = Date.now()
    const s = await open(store, now)
    const moved = newKey(s.locator)
    t.equal(await migrate(store, s, moved, now), true)
    await breakBinding(s.id)
    t.same(await resolve(store, s.id, s.key, now + 1), { status: 'retired' }, 'the retired token')
    t.equal(await store.destroy(s.id, { tokenKey: s.key, migrations: 0, now: now + 2 }), 'retired', 'a logout with it: retired')
    t.ok(await exists(s.id), 'the record is still there')
    t.same(await resolve(store, s.id, moved, now + 3), { status: 'none' }, 'the current token: no session (the binding does not open)')
    t.equal(await store.destroy(s.id, { tokenKey: moved, migrations: 1, now: now + 4 }), true, 'a logout with the current token ends it')
    t.notOk(await exists(s.id), 'and the record is gone')
  })

  await t.test('an earlier token presented after its grace: the theft signal, and the record ends', async (t) => {
    const { store, breakBinding, exists } = await subject()
    const now = Date.now()
    const s = await open(store, now)
    t.equal((await resolve(store, s.id, s.key, now)).status, 'live')
    const next = newKey(s.locator)
    const box = successorOf(generateToken()).box
    t.match(await store.commit({ id: s.id, tokenKey: s.key, patch: null, rotate: { newKey: next, box, unseenWindow: WINDOW }, now: now + 1 }), { status: 'ok', rotated: true })
    t.equal((await resolve(store, s.id, next, now + 2)).status, 'live', 'the new token presented: the old one has its grace from now')
    await breakBinding(s.id)
    t.match(await resolve(store, s.id, s.key, now + 2 + GRACE + 1), { status: 'reused', revoked: true, sandbox: 'auth-pending' }, 'the old token after its grace')
    t.notOk(await exists(s.id), 'the record is gone')
  })

  await t.test('the current token: no session, and nothing ends it', async (t) => {
    const { store, breakBinding, exists } = await subject()
    const now = Date.now()
    const s = await open(store, now)
    await breakBinding(s.id)
    t.same(await resolve(store, s.id, s.key, now + 1), { status: 'none' })
    t.ok(await exists(s.id), 'the record is still there (it expires idle)')
  })
}

const redis = await connect()
t.test('RedisStore', { skip: typeof redis === 'string' && !IN_CI ? redis : false }, async (t) => {
  if (typeof redis === 'string') { t.fail(`${redis}: CI is set, so the RedisStore part must run`); return }
  t.teardown(() => { redis.disconnect() })
  await cases(t, async () => {
    const prefix = newPrefix()
    const store = new RedisStore({ client: redis, prefix, secret: randomBytes(32) })
    t.teardown(async () => { await store.close(); await deleteUnder(redis, prefix) })
    const key = (id: string): string => `${prefix}s:{${id}}`
    return {
      store,
      breakBinding: async (id) => {
        const sealed = (await redis.hgetBuffer(key(id), 'ms'))!
        sealed[sealed.length - 1]! ^= 1
        await redis.hset(key(id), 'ms', sealed)
      },
      breakTokenState: async (id) => { await redis.hset(key(id), 'p', '12,garbage') },
      exists: async (id) => await redis.exists(key(id)) === 1
    }
  })
})

const pool = await connectPool()
t.test('PostgresStore', { skip: typeof pool === 'string' && !IN_CI ? pool : false }, async (t) => {
  if (typeof pool === 'string') { t.fail(`${pool}: CI is set, so the PostgresStore part must run`); return }
  t.teardown(async () => { await pool.end() })
  await cases(t, async () => {
    const schema = newSchema()
    const store = new PostgresStore({ pool, secret: randomBytes(32), schema, sweepInterval: 0 })
    await store.migrate()
    t.teardown(async () => { await store.close(); await dropSchema(pool, schema) })
    return {
      store,
      breakBinding: async (id) => {
        await pool.query(`UPDATE "${schema}".xems_sessions SET binding = set_byte(binding, length(binding) - 1, get_byte(binding, length(binding) - 1) # 1) WHERE id = $1`, [id])
      },
      breakTokenState: async (id) => { await pool.query(`UPDATE "${schema}".xems_sessions SET rotation = '{"past": "garbage"}'::jsonb WHERE id = $1`, [id]) },
      exists: async (id) => (await pool.query(`SELECT 1 FROM "${schema}".xems_sessions WHERE id = $1`, [id])).rowCount === 1
    }
  })
})
