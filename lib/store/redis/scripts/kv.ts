import { defineScript } from './define.js'

/** The values of kvGet/kvSet/kvAdd/kvTake: a hash of `e` (when it expires) and `v` (the sealed value). */

/** The sealed value, or nil (an expired one is deleted). */
export const kvGet = defineScript({
  prelude: '',
  keys: ['key'],
  argv: { now: 'number' },
  body: `
local v = redis.call('HMGET', key, 'e', 'v')
if not v[1] then return false end
if tonumber(v[1]) <= now then
  redis.call('DEL', key)
  return false
end
return v[2]
`
})

/** Sets the value (a ttl ≤ 0 only deletes it). */
export const kvSet = defineScript({
  prelude: '',
  keys: ['key'],
  argv: { now: 'number', ttl: 'number', sealed: 'text' },
  body: `
redis.call('DEL', key)
if ttl <= 0 then return 0 end
redis.call('HSET', key, 'e', string.format('%d', now + ttl), 'v', sealed)
redis.call('PEXPIRE', key, ttlText)
return 1
`
})

/** 1 when set, 0 when a live value is there. */
export const kvAdd = defineScript({
  prelude: '',
  keys: ['key'],
  argv: { now: 'number', ttl: 'number', sealed: 'text' },
  body: `
local e = redis.call('HGET', key, 'e')
if e and tonumber(e) > now then return 0 end
redis.call('DEL', key)
if ttl <= 0 then return 1 end
redis.call('HSET', key, 'e', string.format('%d', now + ttl), 'v', sealed)
redis.call('PEXPIRE', key, ttlText)
return 1
`
})

/** The sealed value (now deleted), or nil. */
export const kvTake = defineScript({
  prelude: '',
  keys: ['key'],
  argv: { now: 'number' },
  body: `
local v = redis.call('HMGET', key, 'e', 'v')
if not v[1] then return false end
redis.call('DEL', key)
if tonumber(v[1]) <= now then return false end
return v[2]
`
})
