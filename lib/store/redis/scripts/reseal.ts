import { defineScript } from './define.js'

/**
 * Rewrites sealed fields under the newest key after a secret rotation, only where they still hold what
 * was read (compare and set), so a concurrent write is never undone and nothing deleted comes back.
 * Returns how many were rewritten.
 */
export const reseal = defineScript({
  prelude: '',
  keys: ['key'],
  argv: {},
  /** field, old value, new value, ... */
  rest: 'items',
  body: `
local done = 0
for i = itemsFrom, #ARGV, 3 do
  if redis.call('HGET', key, ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', key, ARGV[i], ARGV[i + 2])
    done = done + 1
  end
end
return done
`
})
