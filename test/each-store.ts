/**
 * What the suites that race requests against each other on every store share: a gate that holds a
 * handler in flight until the test lets it go on, and a runner that gives the same cases MemoryStore,
 * RedisStore (127.0.0.1:6379, a prefix of its own) and PostgresStore (127.0.0.1:5432, a schema of its own).
 * A store whose server is not reachable is skipped on a developer's machine and FAILS under CI.
 */
import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import { MemoryStore, type SessionStore } from '../index.js'
import { PostgresStore } from '../lib/store/postgres/postgres-store.js'
import { RedisStore } from '../lib/store/redis/redis-store.js'
import { connectPool, dropSchema, newSchema } from './postgres/pg-helpers.js'
import { connect, deleteUnder, IN_CI, newPrefix } from './redis/redis-helpers.js'

/** A handler held in flight. */
export interface Gate {
  /** Resolves once the held handler is waiting. */
  entered: Promise<void>
  release: () => void
}

/** A gate, and what the held handler awaits (it marks the gate entered, then waits for release). */
export function gate (): { gate: Gate, wait: () => Promise<void> } {
  let entered!: () => void
  let release!: () => void
  const enteredP = new Promise<void>((resolve) => { entered = resolve })
  const released = new Promise<void>((resolve) => { release = resolve })
  return { gate: { entered: enteredP, release }, wait: async () => { entered(); await released } }
}

/** Makes a fresh store for one test, closed (and its keys or schema dropped) at that test's end. */
export type MakeStore = (t: Test) => Promise<SessionStore>

/** Runs `cases` once per store, each as a subtest named after the store. */
export async function onEveryStore (t: Test, cases: (t: Test, makeStore: MakeStore) => Promise<void>): Promise<void> {
  await t.test('MemoryStore', async (t) => {
    await cases(t, async (t) => {
      const store = new MemoryStore()
      t.teardown(async () => { await store.close() })
      return store
    })
  })
  const redis = await connect()
  await t.test('RedisStore', { skip: typeof redis === 'string' && !IN_CI ? redis : false }, async (t) => {
    if (typeof redis === 'string') { t.fail(redis); return }
    t.teardown(() => { redis.disconnect() })
    await cases(t, async (t) => {
      const prefix = newPrefix()
      const store = new RedisStore({ client: redis, prefix, secret: randomBytes(32) })
      t.teardown(async () => { await store.close(); await deleteUnder(redis, prefix) })
      return store
    })
  })
  const pool = await connectPool()
  await t.test('PostgresStore', { skip: typeof pool === 'string' && !IN_CI ? pool : false }, async (t) => {
    if (typeof pool === 'string') { t.fail(pool); return }
    t.teardown(async () => { await pool.end() })
    await cases(t, async (t) => {
      const schema = newSchema()
      const store = new PostgresStore({ pool, secret: randomBytes(32), schema, sweepInterval: 0 })
      await store.migrate()
      t.teardown(async () => { await store.close(); await dropSchema(pool, schema) })
      return store
    })
  })
}
