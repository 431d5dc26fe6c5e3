/** fastify-xems/redis: RedisStore, for sessions shared by many processes (needs the optional peer `ioredis`). */
export { RedisStore, REDIS_SEAL_PURPOSE } from './lib/store/redis/redis-store.js'
export type { RedisStoreOptions, RedisStoreSecret } from './lib/store/redis/redis-store.js'
