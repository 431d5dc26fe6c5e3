import { defineScript } from './define.js'

/** A counter (`n` the count, `r` when it resets) counted up in its window. Returns {count, resetAt}. */
export const increment = defineScript({
  prelude: '',
  keys: ['key'],
  argv: { now: 'number', window: 'number' },
  body: `
local v = redis.call('HMGET', key, 'n', 'r')
local n, r = tonumber(v[1]), tonumber(v[2])
if not n or not r or r <= now then
  n = 0
  r = now + window
end
n = n + 1
redis.call('HSET', key, 'n', string.format('%d', n), 'r', string.format('%d', r))
redis.call('PEXPIRE', key, string.format('%d', r - now))
return { n, r }
`
})
