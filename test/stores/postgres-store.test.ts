/**
 * PostgresStore against the machine's PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test):
 * the conformance suite, then what only PostgreSQL has: the schema and its migration, the layout format,
 * sealing and binding (what a DBA sees), secrets and their rotation, the sweep by the deadline index, two
 * app instances on one database, lock and statement timeouts, and connections killed with
 * pg_terminate_backend (only this test's own, by application_name). Every test works in a schema of its
 * own (xems_test_<pid>_<random>), dropped afterwards. Without PostgreSQL the file skips, unless CI is
 * set: then it fails.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type pg from 'pg'
import t, { type Test } from 'tap'
import { successorOf } from '../../lib/crypto/cipher.js'
import { generateLocator, recordIdOf, secretKeyOf, sessionTokenOf } from '../../lib/session/token.js'
import { postgresSchemaSql } from '../../lib/store/postgres/schema.js'
import { PostgresStore, type PostgresStoreOptions } from '../../lib/store/postgres/postgres-store.js'
import { generateToken } from '../../lib/crypto/random-token.js'
import { connectPool, dropSchema, IN_CI, newPool, newSchema, terminateOwn } from '../postgres/pg-helpers.js'
import { runStoreConformance } from './conformance.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const newKey = (): string => secretKeyOf(sessionTokenOf(generateLocator(), generateToken()))
const newBox = (): string => successorOf(generateToken()).box

async function create (
  store: PostgresStore, options: { userId?: string, data?: Record<string, string>, now?: number, idleTtl?: number } = {}
): Promise<{ id: string, key: string }> {
  const id = recordIdOf(generateLocator())
  const key = newKey()
  const now = options.now ?? Date.now()
  await store.create({
    id,
    sandbox: 'auth-active',
    tokenKey: key,
    data: options.data ?? { user: '"ada"' },
    now,
    idleTtl: options.idleTtl ?? HOUR,
    absoluteExpiresAt: now + 5 * DAY,
    ...(options.userId === undefined ? {} : { userId: options.userId })
  })
  return { id, key }
}
const resolve = async (store: PostgresStore, c: { id: string, key: string }, now = Date.now()) =>
  await store.resolve({ id: c.id, tokenKey: c.key, now, gracePeriod: 2000, revokeOnReuse: true })

const connected = await connectPool()
if (typeof connected === 'string') {
  if (IN_CI) t.fail(`${connected}: CI is set, so the PostgresStore tests must run (start PostgreSQL or set DATABASE_URL)`)
  else t.plan(0, `${connected}: start PostgreSQL or set DATABASE_URL to run the PostgresStore tests`)
} else {
  const pool = connected
  t.teardown(async () => { await pool.end() })
  const secret = randomBytes(32)

  /** A migrated store in a fresh schema, dropped when the test ends. */
  async function scratch (t: Test, options: Partial<PostgresStoreOptions> = {}): Promise<{ store: PostgresStore, schema: string }> {
    const schema = options.schema ?? newSchema()
    const store = new PostgresStore({ pool, secret, sweepInterval: 0, ...options, schema })
    await store.migrate()
    t.teardown(async () => {
      await store.close()
      await dropSchema(pool, schema)
    })
    return { store, schema }
  }

  t.test('PostgresStore passes the store conformance suite', async (t) => {
    runStoreConformance(t, async () => {
      const schema = newSchema()
      const store = new PostgresStore({ pool, secret, schema, sweepInterval: 0 })
      await store.migrate()
      return {
        store,
        cleanup: async () => {
          await store.close()
          await dropSchema(pool, schema)
        }
      }
    })
  })

  t.test('migrate() creates the schema once, concurrently from many instances; docs/postgres-schema.sql is the same DDL', async (t) => {
    const schema = newSchema()
    t.teardown(async () => { await dropSchema(pool, schema) })
    const stores = Array.from({ length: 6 }, () => new PostgresStore({ pool, secret, schema, tablePrefix: 'app_', sweepInterval: 0 }))
    await Promise.all(stores.map(async (store) => { await store.migrate() }))
    await stores[0]!.migrate()
    const { rows } = await pool.query<{ table_name: string }>(
      'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name', [schema])
    t.same(rows.map((row) => row.table_name), ['app_counters', 'app_kv', 'app_meta', 'app_sessions'])
    const c = await create(stores[1]!)
    t.equal((await resolve(stores[2]!, c)).status, 'live', 'any instance reads what another wrote')
    t.equal(readFileSync(new URL('../../docs/postgres-schema.sql', import.meta.url), 'utf8'), postgresSchemaSql(),
      'docs/postgres-schema.sql is postgresSchemaSql() for schema public, prefix xems_')
    for (const store of stores) await store.close()
  })

  t.test('a schema without tables, or of another layout format, is refused with a clear error', async (t) => {
    const schema = newSchema()
    t.teardown(async () => { await dropSchema(pool, schema) })
    const bare = new PostgresStore({ pool, secret, schema, sweepInterval: 0 })
    await t.rejects(bare.ready(), { code: 'FST_XEMS_STORE_FORMAT', message: /Call `await store\.migrate\(\)`/ })
    await t.rejects(create(bare), { code: 'FST_XEMS_STORE_FORMAT' }, 'every operation refuses')
    await bare.migrate()
    await pool.query(`UPDATE "${schema}"."xems_meta" SET value = convert_to('7', 'UTF8') WHERE name = 'format'`)
    const later = new PostgresStore({ pool, secret, schema, sweepInterval: 0 })
    await t.rejects(later.ready(), { code: 'FST_XEMS_STORE_FORMAT', message: /layout format 7; this version reads format 1/ })
    await t.rejects(later.migrate(), { code: 'FST_XEMS_STORE_FORMAT' }, 'migrate() does not touch a newer format either')
    t.throws(() => new PostgresStore({ pool, secret, schema: 'Bad-Name' }), { code: 'FST_XEMS_BAD_OPTION' })
    t.throws(() => new PostgresStore({ pool, secret, tablePrefix: 'x"; DROP' }), { code: 'FST_XEMS_BAD_OPTION' })
    t.throws(() => new PostgresStore({ pool: {} as pg.Pool, secret }), { code: 'FST_XEMS_BAD_OPTION' })
  })

  t.test('what a DBA sees: no user id, data or value in clear; a row moved to another id does not open', async (t) => {
    const { store, schema } = await scratch(t)
    const now = Date.now()
    const c = await create(store, { userId: 'ada-lovelace@example.com', data: { secret: '"the-analytical-engine"' }, now })
    await store.kvSet('users-registry', 'ada-lovelace@example.com', '{"hash":"argon2-of-babbage"}', HOUR, now)
    const other = await create(store, { now })
    const dump = await pool.query(`SELECT (SELECT json_agg(s)::text FROM "${schema}".xems_sessions s) || (SELECT json_agg(v)::text FROM "${schema}".xems_kv v) AS all`)
    const text = String(dump.rows[0].all)
    for (const plain of ['ada-lovelace', 'analytical', 'babbage']) t.notOk(text.includes(plain), `"${plain}" is not in the tables`)
    for (const plain of ['ada-lovelace', 'analytical', 'babbage']) t.notOk(text.includes(Buffer.from(plain).toString('hex')), 'nor its hex')
    // Swap the sealed data of two rows: neither opens elsewhere.
    await pool.query(`UPDATE "${schema}".xems_sessions SET data = (SELECT data FROM "${schema}".xems_sessions WHERE id = $1) WHERE id = $2`, [c.id, other.id])
    t.same(await resolve(store, other, now + 1), { status: 'none' }, 'data sealed for another row does not open')
    await pool.query(`UPDATE "${schema}".xems_sessions SET sandbox = 'admin' WHERE id = $1`, [c.id])
    t.same(await resolve(store, c, now + 2), { status: 'none' }, 'a sandbox changed behind the store\'s back does not open')
    const third = await create(store, { now })
    await pool.query(`UPDATE "${schema}".xems_sessions SET binding = set_byte(binding, length(binding) - 1, get_byte(binding, length(binding) - 1) # 1) WHERE id = $1`, [third.id])
    t.same(await resolve(store, third, now + 3), { status: 'none' }, 'a flipped byte opens to no session')
  })

  t.test('quotes, backslashes and SQL in every value the transactions inline come back as they went in', async (t) => {
    const { store, schema } = await scratch(t)
    const now = Date.now()
    const odd = "it's \\ a \"sandbox\"; DROP TABLE x; --"
    const id = recordIdOf(generateLocator())
    const key = "k'ey\\1"
    await store.create({
      id, sandbox: odd, tokenKey: key, data: { "q'uote": '"\\\\ \' $1"' }, userId: "ada'); DELETE FROM t; --", now, idleTtl: HOUR, absoluteExpiresAt: now + DAY
    })
    const live = await store.resolve({ id, tokenKey: key, sandbox: odd, now, gracePeriod: 2000, revokeOnReuse: true })
    if (live.status !== 'live') return t.fail(`expected live, got ${live.status}`)
    t.equal(live.session.userId, "ada'); DELETE FROM t; --")
    t.same({ ...live.session.data }, { "q'uote": '"\\\\ \' $1"' })
    const next = "n\\e'xt$2"
    const box = newBox()
    t.same(
      await store.commit({ id, tokenKey: key, patch: { "a'\\b": '"$1 $2"' }, rotate: { newKey: next, box, unseenWindow: 600_000 }, now }),
      { status: 'ok', rotated: true, expiresAt: now + HOUR }
    )
    t.equal(await store.migrate({ id, tokenKey: next, from: odd, to: "to'\\", newKey: "n'3", retiredUntil: now + 1000, data: null, idleTtl: HOUR, now, userId: "b\\'ob" }), true)
    const moved = await store.resolve({ id, tokenKey: "n'3", now: now + 1, gracePeriod: 2000, revokeOnReuse: true })
    if (moved.status !== 'live') return t.fail(`expected live, got ${moved.status}`)
    t.equal(moved.session.sandbox, "to'\\")
    t.equal(moved.session.userId, "b\\'ob")
    t.same({ ...moved.session.data }, { "q'uote": '"\\\\ \' $1"', "a'\\b": '"$1 $2"' })
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${schema}".xems_sessions`)
    t.equal(rows[0].n, 1, 'nothing else was run')
  })

  t.test('secrets: another secret is refused; [new, old] reads old data and rewrites it under the new one', async (t) => {
    const { store, schema } = await scratch(t)
    const now = Date.now()
    const c = await create(store, { userId: 'u1', now })
    await store.kvSet('s', 'k', 'v', HOUR, now)
    await t.rejects(new PostgresStore({ pool, secret: randomBytes(32), schema, sweepInterval: 0 }).ready(), { code: 'FST_XEMS_WRONG_SECRET' })
    const fresh = randomBytes(32)
    const rotated = new PostgresStore({ pool, secret: [fresh, secret], schema, sweepInterval: 0 })
    const live = await resolve(rotated, c, now + 1)
    t.equal(live.status, 'live')
    if (live.status === 'live') t.equal(live.session.userId, 'u1')
    t.equal(await rotated.kvGet('s', 'k', now + 1), 'v')
    const onlyNew = new PostgresStore({ pool, secret: fresh, schema, sweepInterval: 0 })
    t.equal((await resolve(onlyNew, c, now + 2)).status, 'live', 'the session was rewritten under the new secret')
    t.equal(await onlyNew.kvGet('s', 'k', now + 2), 'v', 'and the value')
  })

  t.test('the sweep deletes expired rows in batches by the deadline index; live ones stay', async (t) => {
    const { store, schema } = await scratch(t, { sweepBatch: 100 })
    const now = Date.now()
    await Promise.all(Array.from({ length: 300 }, async () => await create(store, { now: now - 2 * HOUR })))
    const live = await Promise.all(Array.from({ length: 20 }, async () => await create(store, { now })))
    for (let i = 0; i < 50; i++) await store.kvSet('s', `old${i}`, 'v', 1000, now - 5000)
    await store.kvSet('s', 'kept', 'v', HOUR, now)
    await store.increment('old', 1000, now - 5000)
    await store.increment('kept', HOUR, now)
    // Planner statistics of a busy table: the sweep's subquery goes by the index on expires_at.
    await pool.query(`INSERT INTO "${schema}".xems_sessions SELECT 'filler' || g, sandbox, NULL, created_at, last_seen_at, idle_ttl, absolute_expires_at,
      $1::bigint + g, rotation, binding, data FROM (SELECT * FROM "${schema}".xems_sessions LIMIT 1) s, generate_series(1, 20000) g`, [now + HOUR])
    await pool.query(`ANALYZE "${schema}".xems_sessions`)
    const plan = await pool.query(`EXPLAIN SELECT id FROM "${schema}".xems_sessions WHERE expires_at <= $1 ORDER BY expires_at LIMIT 100 FOR UPDATE SKIP LOCKED`, [now])
    const text = plan.rows.map((row: Record<string, string>) => row['QUERY PLAN']).join('\n')
    t.match(text, /Index Scan using "?xems_sessions_expires_at"?/, 'an index scan on the deadline')
    t.notMatch(text, /Seq Scan/, 'never a full scan')
    t.equal(await store.sweep(now), 300 + 50 + 1, 'every expired session, value and counter')
    t.equal(await store.sweep(now), 0)
    for (const c of live) t.equal((await resolve(store, c, now + 1)).status, 'live')
    t.equal(await store.kvGet('s', 'kept', now + 1), 'v')
    t.same(await store.increment('kept', HOUR, now + 1), { count: 2, resetAt: now + HOUR })
  })

  t.test('the sweep runs on its interval', async (t) => {
    const { store, schema } = await scratch(t, { sweepInterval: 200 })
    await create(store, { now: Date.now() - 2 * HOUR })
    for (let i = 0; i < 50; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${schema}".xems_sessions`)
      if (rows[0].n === 0) return t.pass('swept within ' + (i + 1) * 100 + ' ms')
    }
    t.fail('not swept')
  })

  t.test('two app instances on one database: rotation across them, 400 concurrent writes, nothing lost, one rotation', async (t) => {
    const schema = newSchema()
    const poolA = newPool({ max: 10, connectionTimeoutMillis: 20_000 })
    const poolB = newPool({ max: 10, connectionTimeoutMillis: 20_000 })
    t.teardown(async () => { await poolA.end(); await poolB.end() })
    // 400 transactions queue on one row lock: give the queue time (the default 2 s bounds one request's wait).
    const { store: a } = await scratch(t, { schema, pool: poolA, timeout: 20_000 })
    const b = new PostgresStore({ pool: poolB, secret, schema, sweepInterval: 0, timeout: 20_000 })
    t.teardown(async () => { await b.close() })
    const now = Date.now()
    const c = await create(a, { now })
    t.equal((await resolve(b, c, now)).status, 'live')
    const next = newKey()
    const box = newBox()
    t.same(
      await b.commit({ id: c.id, tokenKey: c.key, patch: null, rotate: { newKey: next, box, unseenWindow: 600_000 }, now }), { status: 'ok', rotated: true, expiresAt: now + HOUR }
    )
    const grace = await a.resolve({ id: c.id, tokenKey: c.key, now: now + 1, gracePeriod: 2000, revokeOnReuse: true })
    t.equal(grace.status, 'grace', 'instance A sees B\'s rotation')
    if (grace.status === 'grace') t.same(grace.chain, [box])
    t.equal((await resolve(a, { id: c.id, key: next }, now + 2)).status, 'live')

    const started = Date.now()
    const results = await Promise.all(Array.from({ length: 400 }, async (_, i) =>
      await (i % 2 === 0 ? a : b).commit({
        id: c.id, tokenKey: next, patch: { [`k${i}`]: String(i) }, rotate: { newKey: newKey(), box: newBox(), unseenWindow: 600_000 }, now: now + 3
      })))
    t.comment(`400 commits on one session from two instances: ${Date.now() - started} ms`)
    t.equal(results.filter((r) => r.status === 'ok' && r.rotated).length, 1, 'exactly one rotation across both instances')
    t.equal(results.filter((r) => r.status === 'ok').length, 400, 'every write answered ok')
    const after = await b.resolve({ id: c.id, tokenKey: next, now: now + 4, gracePeriod: 2000, revokeOnReuse: false })
    if (after.status !== 'grace') return t.fail(`expected grace, got ${after.status}`)
    const missing = Array.from({ length: 400 }, (_, i) => i).filter((i) => after.session.data[`k${i}`] !== String(i))
    t.same(missing, [], 'all 400 keys are there')
    const counts = await Promise.all(Array.from({ length: 300 }, async (_, i) => await (i % 2 === 0 ? a : b).increment('hits', HOUR, now)))
    t.same(counts.map((r) => r.count).sort((x, y) => x - y), Array.from({ length: 300 }, (_, i) => i + 1), 'counters: 300 hits from two instances, each counted once')
  })

  t.test('round trips: resolve and commit are one transaction of 2 round trips each (BEGIN with the SELECT, the write with COMMIT); create, kv and counters one', async (t) => {
    const { store } = await scratch(t)
    await store.ready()
    let trips = 0
    const counting = new Proxy(pool, {
      get (target, name) {
        if (name !== 'connect') return Reflect.get(target, name)
        return async () => {
          const client = await target.connect()
          return new Proxy(client, {
            get (c, n) {
              if (n === 'query') return async (...args: unknown[]) => { trips++; return await (c.query as (...a: unknown[]) => unknown)(...args) }
              const v = Reflect.get(c, n)
              return typeof v === 'function' ? v.bind(c) : v
            }
          })
        }
      }
    })
    const counted = new PostgresStore({ pool: counting, secret, schema: store.schema, sweepInterval: 0 })
    await counted.ready()
    const now = Date.now()
    const measure = async (what: string, expected: number, fn: () => Promise<unknown>): Promise<void> => {
      trips = 0
      await fn()
      t.equal(trips, expected, `${what}: ${expected} round trip${expected === 1 ? '' : 's'}`)
    }
    let c = { id: '', key: '' }
    await measure('create', 1, async () => { c = await create(counted, { now }) })
    await measure('resolve', 2, async () => await resolve(counted, c, now))
    await measure(
      'commit with a patch and a rotation', 2,
      async () => await counted.commit({ id: c.id, tokenKey: c.key, patch: { n: '1' }, rotate: { newKey: newKey(), box: newBox(), unseenWindow: 600_000 }, now })
    )
    await measure('kvAdd', 1, async () => await counted.kvAdd('s', 'k', 'v', HOUR, now))
    await measure('kvTake', 1, async () => await counted.kvTake('s', 'k', now))
    await measure('increment', 1, async () => await counted.increment('c', HOUR, now))
    await measure('revokeUser', 1, async () => await counted.revokeUser('u', now))
    await measure('resolve of a reused token, revoking', 2, async () => await resolve(counted, { id: c.id, key: newKey() }, now))
    await measure('resolve of an unknown session', 2, async () => await resolve(counted, { id: recordIdOf(generateLocator()), key: newKey() }, now))
  })

  t.test('a row locked past the timeout fails the call (lock_timeout), and the store goes on', async (t) => {
    const { store, schema } = await scratch(t, { timeout: 500 })
    const c = await create(store)
    const holder = await pool.connect()
    t.teardown(() => { holder.release() })
    await holder.query('BEGIN')
    await holder.query(`SELECT 1 FROM "${schema}".xems_sessions WHERE id = $1 FOR UPDATE`, [c.id])
    const started = Date.now()
    await t.rejects(resolve(store, c), /lock timeout|no answer/)
    t.ok(Date.now() - started < 1500, `failed after ${Date.now() - started} ms`)
    await holder.query('ROLLBACK')
    t.equal((await resolve(store, c)).status, 'live')
  })

  t.test('connections killed with pg_terminate_backend: the call in flight fails, the next ones work', async (t) => {
    const name = `xems-test-${process.pid}-${randomBytes(3).toString('hex')}`
    const own = newPool({ application_name: name, max: 4 })
    t.teardown(async () => { await own.end() })
    const { store, schema } = await scratch(t, { pool: own, timeout: 10_000 })
    const c = await create(store)
    // A call held in flight: its transaction waits on a row lock another connection holds.
    const holder = await pool.connect()
    t.teardown(() => { holder.release() })
    await holder.query('BEGIN')
    await holder.query(`SELECT 1 FROM "${schema}".xems_sessions WHERE id = $1 FOR UPDATE`, [c.id])
    const inFlight = resolve(store, c).then(() => 'answered', (err: Error) => err.message)
    await new Promise((resolve) => setTimeout(resolve, 200))
    const ended = await terminateOwn(pool, name)
    t.ok(ended >= 1, `${ended} connections of this test ended`)
    t.match(await inFlight, /terminat|Connection/i, 'the call in flight fails (the engine answers 503)')
    await holder.query('ROLLBACK')
    t.equal((await resolve(store, c)).status, 'live', 'the next call works on a fresh connection')
    await terminateOwn(pool, name)
    await new Promise((resolve) => setTimeout(resolve, 50))
    t.equal((await resolve(store, c)).status, 'live', 'idle connections killed: the pool replaces them')
  })
}
