/** The options of RedisStore, and their checks. */
import type { Cluster, Redis } from 'ioredis'
import { parseSecret } from '../../crypto/cipher.js'
import { badOption } from '../../errors.js'

/** A 32-byte secret as `parseSecret` reads it: 32 bytes, 64 hex characters, base64 of 32 bytes, 32 ASCII characters. */
export type RedisStoreSecret = string | Uint8Array

export interface RedisStoreOptions {
  /**
   * An ioredis client, `new Redis(...)` or `new Redis.Cluster(...)`. It stays yours: `close()` does not
   * quit it. Configure it to fail fast (`enableOfflineQueue: false`, `maxRetriesPerRequest`,
   * `commandTimeout`): see docs/stores.md.
   */
  client: Redis | Cluster
  /** Prefix of every key (default `xems:`): 1 to 64 characters from `[A-Za-z0-9:_./-]`. */
  prefix?: string | undefined
  /**
   * The secret that seals everything written to Redis: one 32-byte secret, or `[newest, ...older]`
   * while rotating (data sealed under an older one still opens and is rewritten under the newest).
   */
  secret: RedisStoreSecret | RedisStoreSecret[]
}

const PREFIX_SYNTAX = /^[A-Za-z0-9:_./-]{1,64}$/

/** Checks the options (FST_XEMS_BAD_OPTION): the key prefix, and the secrets as 32-byte keys, newest first. */
export function parseOptions (options: RedisStoreOptions): { prefix: string, secrets: Buffer[] } {
  if (options === null || typeof options !== 'object') {
    throw badOption('options', 'of RedisStore must be an object { client, secret, prefix? }')
  }
  const client = options.client as unknown as Record<string, unknown> | null | undefined
  if (client === null || typeof client !== 'object' || typeof client.defineCommand !== 'function') {
    throw badOption('client', 'must be an ioredis client: new Redis(url) or new Redis.Cluster(nodes)')
  }
  const prefix = options.prefix ?? 'xems:'
  if (typeof prefix !== 'string' || !PREFIX_SYNTAX.test(prefix)) {
    throw badOption('prefix', 'must be 1 to 64 characters from [A-Za-z0-9:_./-] (no braces: the store adds its own hash tags)')
  }
  if (options.secret === undefined || options.secret === null) {
    throw badOption('secret', 'is required: a 32-byte secret (or [newest, ...older] while rotating) that seals everything written to Redis')
  }
  const given = Array.isArray(options.secret) ? options.secret : [options.secret]
  if (given.length === 0) throw badOption('secret', 'must hold at least one secret')
  const secrets = given.map((secret, i) => parseSecret(secret, Array.isArray(options.secret) ? `secret[${i}]` : 'secret'))
  const keyPrefix = (client.options as { keyPrefix?: unknown } | undefined)?.keyPrefix
  if (keyPrefix !== undefined && typeof keyPrefix !== 'string') throw badOption('client', 'has a keyPrefix that is not a string')
  if (typeof keyPrefix === 'string' && /[{}]/.test(keyPrefix)) {
    throw badOption('client', 'has a keyPrefix with a brace: it would put every key in one hash slot; the store adds its own hash tags')
  }

  return { prefix, secrets }
}
