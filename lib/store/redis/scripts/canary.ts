import { defineScript } from './define.js'

/**
 * Returns every field/value the canary held before; when it held none, the format and the marker of
 * the caller's newest key are written (the first writer claims the prefix).
 */
export const canary = defineScript({
  prelude: '',
  keys: ['key'],
  argv: {
    /** the newest key's id (hex) */
    keyId: 'text',
    /** the canary text sealed under it */
    marker: 'text',
    /** the layout format */
    format: 'number'
  },
  body: `
local all = redis.call('HGETALL', key)
if #all == 0 then redis.call('HSET', key, 'format', formatText, keyId, marker) end
return all
`
})
