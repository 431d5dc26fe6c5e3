import { PRELUDE } from './common.js'
import { defineScript } from './define.js'

/**
 * Ends a session. Returns {1, uk|nil} when a session ended, {0} when there was none, {2} when `checked` (a
 * request's logout) and the presented token may no longer write to it (rotation.ts commitChain, as the
 * commit script has it): nothing is changed. With `now`, a session past its deadline is none ({0}, its key dropped).
 * A session whose token history is damaged is ended whatever the token (as PostgresStore does).
 */
export const destroy = defineScript({
  prelude: PRELUDE,
  keys: ['key'],
  argv: {
    /** whether to judge the presented token first */
    checked: 'flag',
    /** the presented token's key (when checked) */
    tokenKey: 'text',
    /** the session's migration count when the request was admitted, or -1 when unknown */
    migrations: 'number',
    /** the request's clock (when checked), or -1: a session past its deadline by it is none */
    now: 'number'
  },
  body: `
local v = redis.call('HMGET', key, 'sb', 'x', 'uk', 'k', 'p', 'g', 'ls', 'it', 'ax')
if not v[1] or v[2] then return { 0 } end
if now >= 0 then
  local s = times(v[7], v[8], v[9], nil)
  if s == nil or deadline(s) <= now then
    redis.call('DEL', key)
    return { 0 }
  end
end
-- A damaged token history cannot be judged, and no token resolves such a session: a logout ends it.
local n = checked and tokenKey ~= v[4] and pastCount(v[5] or '') or nil
if n ~= nil then
  local p = v[5] or ''
  local may, found = false, false
  for i = 1, n do
    if keyAt(p, i) == tokenKey then
      found = true
      may = rotatedAt(p, i)
      break
    end
  end
  if not found then may = migrations >= 0 and (tonumber(v[6]) or 0) == migrations end
  if not may then return { 2 } end
end
redis.call('DEL', key)
return { 1, v[3] }
`
})
