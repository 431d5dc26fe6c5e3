/**
 * Which store the example runs on, from the environment:
 * - REDIS_URL     → RedisStore on that server (keys under XEMS_REDIS_PREFIX, default xems-example:); XEMS_SECRET seals what is written (a generated one
 *                   otherwise: the sessions then cannot be read by a restarted process).
 * - XEMS_SECRET   → MemoryStore persisted to an encrypted vault in XEMS_VAULT (default ./.xems-vault),
 *                   so sessions and users survive a restart.
 * - neither       → MemoryStore in memory: everything ends with the process. Nothing leaves the process,
 *                   so nothing is sealed and no secret is needed.
 * XEMS_SECRET is 32 bytes: 64 hex characters (openssl rand -hex 32) or base64 (openssl rand -base64 32).
 */
import { randomBytes } from 'node:crypto'
import { resolve } from 'node:path'
import { MemoryStore, type SessionStore } from 'fastify-xems'
import { RedisStore } from 'fastify-xems/redis'

export interface OpenedStore {
  store: SessionStore
  description: string
  close: () => Promise<void>
}

export async function openStore (env: NodeJS.ProcessEnv): Promise<OpenedStore> {
  const secret = env.XEMS_SECRET
  if (env.REDIS_URL !== undefined && env.REDIS_URL !== '') {
    const { Redis } = await import('ioredis')
    // Fail fast while Redis is down: requests answer 503 instead of waiting.
    const client = new Redis(env.REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 2000 })
    await new Promise<void>((resolve, reject) => {
      client.once('ready', resolve)
      client.once('error', reject)
    })
    const store = new RedisStore({ client, secret: secret ?? randomBytes(32).toString('hex'), prefix: env.XEMS_REDIS_PREFIX ?? 'xems-example:' })
    return {
      store,
      description: `Redis at ${new URL(env.REDIS_URL).host}${secret === undefined ? ' (generated secret: set XEMS_SECRET to keep sessions across restarts)' : ''}`,
      close: async () => { await store.close(); client.disconnect() }
    }
  }
  if (secret !== undefined && secret !== '') {
    const path = resolve(env.XEMS_VAULT ?? '.xems-vault')
    const store = await MemoryStore.open({ persistence: { path, secret, fsync: 'everysec' } })
    return { store, description: `the embedded store, persisted to the encrypted vault ${path}`, close: async () => { await store.close() } }
  }
  const store = new MemoryStore()
  return {
    store,
    description: 'the embedded store (in memory: sessions and users end with the process; set XEMS_SECRET to keep them in an encrypted vault)',
    close: async () => { await store.close() }
  }
}
