/**
 * What the review suites (review-s23, -s24, -s24b) share: the stores they attack (MemoryStore, and
 * RedisStore when Redis is reachable; under CI it must be: see connect in test/redis/redis-helpers.ts), and
 * the client steps they take over inject.
 */
import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'
import { MemoryStore, type SessionStore } from '../../index.js'
import { RedisStore } from '../../redis.js'
import { connect, deleteUnder, newPrefix } from '../redis/redis-helpers.js'
import { setCookieToken } from '../helpers.js'

export type StoreFactory = () => { store: SessionStore, close: () => Promise<void> }

/** Each factory call gives a fresh store (RedisStore under a prefix of its own, deleted on close). */
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

export async function get (app: FastifyInstance, url: string, token: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'GET', url, cookies: { xems: token } })
}

/** The token a client holds after a response: the one it set, or the one it had. */
export function after (response: LightMyRequestResponse, had: string): string {
  const set = setCookieToken(response)
  return set === undefined || set === '' ? had : set
}

export const reuseLogged = (logs: string[]): boolean => logs.some((line) => line.includes('"xems":"token-reuse"'))
