import { RECLAIM_MARKS_MS } from './common.js'
import { defineScript } from './define.js'

/**
 * maxSessionsPerUser: the count and the decision, in the user's slot (the index and the limit set share
 * its hash tag).
 *
 * The limit set holds the user's sessions by admission time (when they were created or gained the
 * user); a negative score, −(when), marks one this cap ended whose record the client has yet to end
 * (marks older than RECLAIM_MARKS_MS are handed out again: the sign-in that made them died). It is
 * kept a subset of the index: members gone from the index (revoked, destroyed, past their score) are
 * dropped, and the known
 * dead ids the client passes (records it read as ended, expired or fenced: a dead record never lives
 * again) leave both. Index members missing from it (indexed before the cap was on) count as oldest (0).
 * Returns {1, ids to end...} when the record is admitted (and indexed: nothing else to do in this slot),
 * {2, id, admittedAt, ...} when refused (the counted members, for the client's dead check).
 */
export const admit = defineScript({
  prelude: '',
  keys: ['u', 'l'],
  argv: {
    /** the record id */
    id: 'text',
    /** its index score, as indexAdd */
    score: 'number',
    now: 'number',
    /** maxSessionsPerUser */
    max: 'number',
    /** 'refuse' | 'end-oldest' */
    onLimit: 'text'
  },
  /** ids known dead */
  rest: 'dead',
  body: `
redis.call('ZREMRANGEBYSCORE', u, '-inf', nowText)
for i = deadFrom, #ARGV do
  redis.call('ZREM', u, ARGV[i])
  redis.call('ZREM', l, ARGV[i])
end
for _, m in ipairs(redis.call('ZRANGE', l, 0, -1)) do
  if not redis.call('ZSCORE', u, m) then redis.call('ZREM', l, m) end
end
for _, m in ipairs(redis.call('ZRANGE', u, 0, -1)) do
  if not redis.call('ZSCORE', l, m) then redis.call('ZADD', l, '0', m) end
end
local reply = { 1 }
-- marks older than RECLAIM_MARKS_MS: their sign-in died before ending them; hand them out again
for _, m in ipairs(redis.call('ZRANGEBYSCORE', l, '(' .. string.format('%d', ${RECLAIM_MARKS_MS} - now), '(0')) do reply[#reply + 1] = m end
if score <= now then return reply end
if not redis.call('ZSCORE', l, id) then
  local counted = redis.call('ZRANGEBYSCORE', l, 0, '+inf')
  if #counted >= max then
    if onLimit == 'refuse' then
      local refused = redis.call('ZRANGEBYSCORE', l, 0, '+inf', 'WITHSCORES')
      table.insert(refused, 1, 2)
      return refused
    end
    for i = 1, #counted - max + 1 do
      redis.call('ZADD', l, string.format('%d', -now), counted[i])
      reply[#reply + 1] = counted[i]
    end
  end
  redis.call('ZADD', l, nowText, id)
end
local old = redis.call('ZSCORE', u, id)
if not old or tonumber(old) < score then redis.call('ZADD', u, scoreText, id) end
local top = redis.call('ZRANGE', u, -1, -1, 'WITHSCORES')
local ttl = string.format('%d', tonumber(top[2]) - now)
redis.call('PEXPIRE', u, ttl)
redis.call('PEXPIRE', l, ttl)
return reply
`
})

/** After an admission: the ids whose records are ended leave the index and the limit set. */
export const admitDone = defineScript({
  prelude: '',
  keys: ['u', 'l'],
  argv: {},
  /** the ended ids */
  rest: 'ids',
  body: `
for i = idsFrom, #ARGV do
  redis.call('ZREM', u, ARGV[i])
  redis.call('ZREM', l, ARGV[i])
end
return 1
`
})

/**
 * Fences a record that is not there (a tombstone until `until`), so a create still on its way is born
 * revoked: 1 when fenced (or already a tombstone), 0 when it exists.
 */
export const fence = defineScript({
  prelude: '',
  keys: ['key'],
  argv: {
    now: 'number',
    /** when the tombstone ends */
    fenceUntil: 'number'
  },
  body: `
local v = redis.call('HMGET', key, 'sb', 'x')
if v[2] then return 1 end
if v[1] then return 0 end
redis.call('HSET', key, 'x', '1')
redis.call('PEXPIRE', key, string.format('%d', fenceUntil - now))
return 1
`
})
