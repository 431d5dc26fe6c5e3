import { PRELUDE } from './common.js'
import { defineScript } from './define.js'

/**
 * Writes a new session. Returns 1; 0 when the session is already past its deadline or a revocation
 * fenced the record (then nothing is written).
 * Idempotent: the engine creates a record once, so a copy resent by the client after a reconnect only
 * rewrites the same session.
 */
export const create = defineScript({
  prelude: PRELUDE,
  keys: ['key'],
  argv: {
    /** the sandbox (sb) */
    sandbox: 'text',
    /** the current token key (k) */
    tokenKey: 'text',
    /** now: createdAt (ca), lastSeenAt */
    now: 'number',
    /** the idle ttl in ms (it) */
    idleTtl: 'number',
    /** absoluteExpiresAt (ax) */
    absoluteExpiresAt: 'number',
    /** the digest of the user id (uk), or '' without a user */
    userKey: 'text',
    /** the sealed user id (u), or '' without a user */
    sealedUser: 'text',
    /** the seal binding sandbox + idle ttl (ms) */
    sandboxSeal: 'text',
    /** the seal binding createdAt + absoluteExpiresAt (mt) */
    timesSeal: 'text'
  },
  /** the data fields: field, value, ... */
  rest: 'data',
  body: `
if redis.call('HEXISTS', key, 'x') == 1 then return 0 end
redis.call('DEL', key)
if math.min(now + idleTtl, absoluteExpiresAt) <= now then return 0 end
local fields = { 'sb', sandbox, 'ca', nowText, 'it', idleTtlText, 'ax', absoluteExpiresAtText, 'k', tokenKey, 's', '0', 'p', '',
  'ms', sandboxSeal, 'mt', timesSeal }
if userKey ~= '' then
  fields[#fields + 1] = 'uk'
  fields[#fields + 1] = userKey
  fields[#fields + 1] = 'u'
  fields[#fields + 1] = sealedUser
end
hsetPairs(key, dataFrom, #ARGV)
touch(key, { ls = now, it = idleTtl, ax = absoluteExpiresAt, xp = 0 }, now, fields)
return 1
`
})
