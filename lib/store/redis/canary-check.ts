/**
 * The canary under `<prefix>canary`: the layout format of the prefix, and one marker per key id sealed
 * under that key, so a store with the wrong secret (or meeting another layout) fails before it serves.
 */
import type { Cluster, Redis } from 'ioredis'
import type { Keyring } from '../../crypto/cipher.js'
import { type XemsError, xemsError } from '../../errors.js'
import { buffer, list, text } from './codec.js'
import type { ScriptRunner } from './commands.js'
import { REDIS_FORMAT_VERSION, type RedisKeys } from './layout.js'
import type { RedisSealer } from './sealing.js'
import { SCRIPT } from './scripts/index.js'

const CANARY_TEXT = `fastify-xems redis canary, format ${REDIS_FORMAT_VERSION}`
/** The marker format 1 wrote (its canary had no `format` field). */
const CANARY_TEXT_V1 = 'fastify-xems redis canary v1'

/** One keyring per secret, newest first, with its key id (hex). */
export type CanaryRings = ReadonlyArray<{ id: string, ring: Keyring }>

export interface CanaryParts {
  client: Redis | Cluster
  scripts: ScriptRunner
  keys: RedisKeys
  sealer: RedisSealer
  rings: CanaryRings
}

/**
 * Fails with FST_XEMS_STORE_FORMAT when the prefix holds another layout format, FST_XEMS_WRONG_SECRET
 * when its data was written with another secret; the first store claims an empty prefix, and the
 * marker of a newest key not yet there is added.
 */
export async function checkCanary ({ client, scripts, keys, sealer, rings }: CanaryParts): Promise<void> {
  const newest = rings[0]!
  const marker = newest.ring.seal(CANARY_TEXT, sealer.aad('canary', newest.id))
  const reply = list(await scripts.run(SCRIPT.canary, { key: keys.canary(), keyId: newest.id, marker, format: REDIS_FORMAT_VERSION }))
  if (reply.length === 0) return
  const fields = new Map<string, Buffer | null>()
  for (let i = 0; i + 1 < reply.length; i += 2) fields.set(text(reply[i]), buffer(reply[i + 1]))
  const format = fields.get('format')
  fields.delete('format')
  // Format 1 kept no `format` field; a canary with markers and none is that layout.
  const found = format === undefined ? '1' : format === null ? '?' : format.toString('utf8')
  if (found !== String(REDIS_FORMAT_VERSION)) throw formatError(keys.prefix, found)
  let opened = false
  let hasNewest = false
  for (const [id, sealed] of fields) {
    const mine = rings.find((entry) => entry.id === id)
    if (mine === undefined) continue
    if (id === newest.id) hasNewest = true
    const plain = mine.ring.open(sealed ?? Buffer.alloc(0), sealer.aad('canary', id))?.toString('utf8')
    if (plain === CANARY_TEXT_V1) throw formatError(keys.prefix, '1')
    if (plain !== CANARY_TEXT) {
      throw xemsError(
        'FST_XEMS_WRONG_SECRET', [`the RedisStore canary "${keys.canary()}"`, 'secret', 'its key id matches, so it was tampered with']
      )
    }
    opened = true
  }
  if (!opened) {
    throw xemsError('FST_XEMS_WRONG_SECRET', [`the RedisStore data under prefix "${keys.prefix}"`, 'secret',
      'it was written with another secret. Use that secret (or list it as an older one: [new, old]), or choose another prefix.'])
  }
  if (!hasNewest) await client.hsetnx(keys.canary(), newest.id, marker)
}

function formatError (prefix: string, found: string): XemsError {
  return xemsError('FST_XEMS_STORE_FORMAT', [`the keys under RedisStore prefix "${prefix}"`, found, REDIS_FORMAT_VERSION,
    'Delete every key under the prefix (they are sessions of the old layout: their users sign in again) or choose another prefix. ' +
    'See docs/stores.md, "Layout format".'])
}
