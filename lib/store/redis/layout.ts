/**
 * The layout of RedisStore's keys under a prefix: its format, its key names, and the time bounds the
 * store writes into it. The hashes' fields are described in scripts/common.ts; docs/stores.md shows
 * what a Redis operator sees.
 */
import { digest } from './codec.js'

/** The HKDF purpose of the keys that seal what RedisStore writes (key ids in sealed values derive from it). */
export const REDIS_SEAL_PURPOSE = 'xems/redis/v1'
/**
 * The layout of the keys under a prefix. 1: one hash tag per prefix, a key per token (never released).
 * 2: one hash per session under a hash tag of its own, the rotation state inside it, user indexes apart.
 * The canary records it; a store refuses a prefix written in another format (FST_XEMS_STORE_FORMAT).
 */
export const REDIS_FORMAT_VERSION = 2
/**
 * No session outlives this from any moment (the engine's MAX_AGE_CAP_MS, 5 days; kept here so the
 * store does not import the engine): the index score of a migration, which does not know the deadline.
 */
export const SESSION_LIFETIME_BOUND_MS = 5 * 86_400_000
/**
 * maxSessionsPerUser with 'refuse': a counted record that is still missing this long after its
 * admission is fenced (a tombstone) and no longer counted. Its create, if it ever arrives, is born
 * revoked; a younger missing record is taken for a create on its way and counts.
 */
export const ADMISSION_FENCE_MS = 60_000

/** The names of the keys under one prefix. */
export class RedisKeys {
  readonly prefix: string

  constructor (prefix: string) {
    this.prefix = prefix
  }

  /** A session's hash: a hash tag of its own, so sessions spread over a cluster's slots. */
  session (id: string): string {
    return `${this.prefix}s:{${id}}`
  }

  /** A user's index, under the digest of the user id (its own hash tag too). */
  user (uk: string): string {
    return `${this.prefix}u:{${uk}}`
  }

  /** A user's limit set (maxSessionsPerUser), in the slot of its index. */
  limit (uk: string): string {
    return `${this.prefix}l:{${uk}}`
  }

  value (sandbox: string, key: string): string {
    return `${this.prefix}v:${sandbox}:${digest('value', key)}`
  }

  counter (key: string): string {
    return `${this.prefix}c:${digest('counter', key)}`
  }

  canary (): string {
    return `${this.prefix}canary`
  }
}
