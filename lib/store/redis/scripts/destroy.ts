import { defineScript } from './define.js'

/** Ends a session. Returns {1, uk|nil} when a session ended, else {0}. */
export const destroy = defineScript({
  prelude: '',
  keys: ['key'],
  argv: {},
  body: `
local v = redis.call('HMGET', key, 'sb', 'x', 'uk')
if not v[1] or v[2] then return { 0 } end
redis.call('DEL', key)
return { 1, v[3] }
`
})
