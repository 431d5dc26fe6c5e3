import { defineScript } from './define.js'

/**
 * Adds a record to its user's index: drops entries past their score, adds the record (never lowering
 * its score) and lets the key expire with its highest score. Returns 1, or 0 when the score is already past.
 */
export const indexAdd = defineScript({
  prelude: '',
  keys: ['key'],
  argv: {
    /** the record id */
    member: 'text',
    /** an upper bound of the session's absolute deadline */
    score: 'number',
    now: 'number'
  },
  body: `
redis.call('ZREMRANGEBYSCORE', key, '-inf', nowText)
if score <= now then return 0 end
local old = redis.call('ZSCORE', key, member)
if not old or tonumber(old) < score then redis.call('ZADD', key, scoreText, member) end
local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', key, string.format('%d', tonumber(top[2]) - now))
return 1
`
})

/** Drops the entries of a user's index past their score; returns {member, score, ...}. */
export const indexRead = defineScript({
  prelude: '',
  keys: ['key'],
  argv: { now: 'number' },
  body: `
redis.call('ZREMRANGEBYSCORE', key, '-inf', nowText)
return redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
`
})
