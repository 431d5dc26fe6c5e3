/**
 * The stores the review suites (review-s23, -s24, -s24b) attack: MemoryStore, and RedisStore when Redis is
 * reachable (under CI it must be: see connect in test/redis/redis-helpers.ts). Each factory call gives a
 * fresh store (RedisStore under a prefix of its own, deleted on close).
 */
import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Test } from 'tap'
import { MemoryStore, type SessionStore } from '../../index.js'
import { RedisStore } from '../../redis.js'
import { connect, deleteUnder, newPrefix } from '../redis/redis-helpers.js'

export type StoreFactory = () => { store: SessionStore, close: () => Promise<void> }

export async function reviewStores (t: Test): Promise<Array<[string, StoreFactory]>> {
  const redis = await connect()
  const stores: Array<[string, StoreFactory]> = [['MemoryStore', () => {
    const store = new MemoryStore()
    return { store, close: async () => { await store.close() } }
  }]]
  if (typeof redis !== 'string') {
    const client: Redis = redis
    t.teardown(async () => { await client.quit() })
    const secret = randomBytes(32)
    stores.push(['RedisStore', () => {
      const prefix = newPrefix()
      const store = new RedisStore({ client, prefix, secret })
      return { store, close: async () => { await store.close(); await deleteUnder(client, prefix) } }
    }])
  }
  return stores
}
