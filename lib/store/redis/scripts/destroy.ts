import { PRELUDE } from './common.js'
import { defineScript } from './define.js'

/**
 * Ends a session. Returns {1, uk|nil} when a session ended, {0} when there was none, {2} when `checked` (a
 * request's logout) and the presented token may no longer write to it (rotation.ts commitChain, as the
 * commit script has it): nothing is changed.
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
    migrations: 'number'
  },
  body: `
local v = redis.call('HMGET', key, 'sb', 'x', 'uk', 'k', 'p', 'g')
if not v[1] or v[2] then return { 0 } end
if checked and tokenKey ~= v[4] then
  local p = v[5] or ''
  local n = pastCount(p)
  if n == nil then return { 0 } end
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
