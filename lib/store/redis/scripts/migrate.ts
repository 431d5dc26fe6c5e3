import { PRELUDE } from './common.js'
import { defineScript } from './define.js'

/**
 * Moves a session to another sandbox under a new token (rotation.ts mayMigrate + retireAll), optionally
 * replacing its data and setting its user. Returns 1 when moved, else 0.
 * A copy of a migration that already ran (resent after a reconnect) finds its own newKey current and
 * answers 1 without changing anything: newKey is fresh for every call, so nothing else can match it.
 */
export const migrate = defineScript({
  prelude: PRELUDE,
  keys: ['key'],
  argv: {
    /** the presented token's key */
    tokenKey: 'text',
    /** the sandbox the session must be in */
    from: 'text',
    /** the sandbox it moves to */
    to: 'text',
    /** the key of the new current token */
    newKey: 'text',
    /** until when the earlier tokens stay valid, retired */
    retiredUntil: 'number',
    /** the new idle ttl (ms) */
    idleTtl: 'number',
    now: 'number',
    /** the seal binding the new sandbox + idle ttl (ms) */
    sandboxSeal: 'text',
    /** whether the data is replaced by the rest */
    replaceData: 'flag',
    /** the digest of the user id (uk), or '' to leave the user as it is */
    userKey: 'text',
    /** the sealed user id (u), or '' */
    sealedUser: 'text'
  },
  /** the new data fields when replaceData: field, value, ... */
  rest: 'data',
  body: `
local v = redis.call('HMGET', key, 'sb', 'ls', 'it', 'ax', 'xp', 'k', 'p', 'x', 'uk', 'g')
if not v[1] or not v[6] or v[8] then return 0 end
if v[6] == newKey then return 1 end
local s = times(v[2], v[3], v[4], v[5])
if s == nil then return 0 end
if deadline(s) <= now then
  redis.call('DEL', key)
  return 0
end
if v[1] ~= from then return 0 end
local cur, p = v[6], v[7] or ''
local n = pastCount(p)
if n == nil then return 0 end
-- mayMigrate: the current token, or a rotated one (retired ones may not)
local may = tokenKey == cur
if not may then
  for i = 1, n do
    if keyAt(p, i) == tokenKey and rotatedAt(p, i) then may = true end
  end
end
if not may then return 0 end
-- retireAll: every token still within its deadline retired (rotated ones until retiredUntil, retired ones
-- keep their own deadline), then the current one; at most MAX_RETIRED, the oldest dropped first
local retired = {}
for i = 1, n do
  if untilAt(p, i) > now then
    if rotatedAt(p, i) then retired[#retired + 1] = entryOf(retiredUntil, keyAt(p, i), false)
    else retired[#retired + 1] = string.sub(p, (i - 1) * W + 1, i * W) end
  end
end
retired[#retired + 1] = entryOf(retiredUntil, cur, false)
local kept = {}
for i = math.max(1, #retired - MAX_RETIRED + 1), #retired do kept[#kept + 1] = retired[i] end
if replaceData then
  local old = {}
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if string.sub(f, 1, 2) == 'd:' then old[#old + 1] = f end
  end
  chunked('HDEL', key, old)
  hsetPairs(key, dataFrom, #ARGV)
end
-- g: one migration more (rotation.ts retireAll counts them; commit's rule for tokens the session no longer holds)
local migrations = int((tonumber(v[10]) or 0) + 1)
local fields = { 'sb', to, 'it', idleTtlText, 'k', newKey, 's', '0', 'p', table.concat(kept), 'ms', sandboxSeal, 'g', migrations }
if userKey ~= '' and userKey ~= v[9] then
  fields[#fields + 1] = 'uk'
  fields[#fields + 1] = userKey
  fields[#fields + 1] = 'u'
  fields[#fields + 1] = sealedUser
end
s.it = idleTtl
s.xp = 0
touch(key, s, now, fields)
return 1
`
})
