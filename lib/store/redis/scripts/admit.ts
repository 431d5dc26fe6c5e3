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
 * dropped, and the known dead ids the client passes (records it read as ended, expired or fenced: a
 * dead record never lives again) leave both. Index members missing from it (indexed before the cap was
 * on, or by a migration that did not happen) count as oldest (0). A record in it is counted already,
 * unless `fresh`: a migration whose record does not name the user yet is counted anew (an earlier try
 * may have left it there).
 * Returns {1, added, reclaimed, ids handed out again..., id, score, ...} when the record is admitted (and
 * indexed: nothing else to do in this slot): added is 1 when this run put the record in the limit set,
 * reclaimed how many ids follow (old marks), then the ids this run marked, each with the score it had
 * (for admitUndo). {2, id, admittedAt, ...} when refused (the counted members, for the client's dead check).
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
    onLimit: 'text',
    /** whether the record is counted anew even if it is in the limit set */
    fresh: 'flag'
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
local reply = { 1, 0, 0 }
-- marks older than RECLAIM_MARKS_MS: their sign-in died before ending them; hand them out again
for _, m in ipairs(redis.call('ZRANGEBYSCORE', l, '(' .. string.format('%d', ${RECLAIM_MARKS_MS} - now), '(0')) do reply[#reply + 1] = m end
reply[3] = #reply - 3
if score <= now then return reply end
if fresh or not redis.call('ZSCORE', l, id) then
  local counted = {}
  local all = redis.call('ZRANGEBYSCORE', l, 0, '+inf', 'WITHSCORES')
  for i = 1, #all, 2 do
    if all[i] ~= id then
      counted[#counted + 1] = all[i]
      counted[#counted + 1] = all[i + 1]
    end
  end
  if #counted / 2 >= max then
    if onLimit == 'refuse' then
      table.insert(counted, 1, 2)
      return counted
    end
    for i = 1, #counted / 2 - max + 1 do
      redis.call('ZADD', l, string.format('%d', -now), counted[2 * i - 1])
      reply[#reply + 1] = counted[2 * i - 1]
      reply[#reply + 1] = counted[2 * i]
    end
  end
  redis.call('ZADD', l, nowText, id)
  reply[2] = 1
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
 * After an admission whose record was not written after all (a migration that did not happen): the ids
 * it marked get back the score they had, if they still carry its mark, and the record leaves the limit
 * set if the admission put it there and nothing has marked it since. Its index entry stays (it may be
 * another migration's, on its way to this user: index before record); the next admission counts it
 * again, as oldest, until its score passes or an admission "ends" it (revokeOne leaves alone a record
 * that does not name the user).
 */
export const admitUndo = defineScript({
  prelude: '',
  keys: ['l'],
  argv: {
    /** the record id */
    id: 'text',
    /** the admission's now: its marks are −now, the record's score now */
    now: 'number',
    /** whether the admission added the record to the limit set */
    added: 'flag'
  },
  /** the marked ids, each with the score it had: id, score, ... */
  rest: 'marked',
  body: `
for i = markedFrom, #ARGV - 1, 2 do
  local s = redis.call('ZSCORE', l, ARGV[i])
  if s and tonumber(s) == -now then redis.call('ZADD', l, 'XX', ARGV[i + 1], ARGV[i]) end
end
if added then
  local s = redis.call('ZSCORE', l, id)
  if s and tonumber(s) == now then redis.call('ZREM', l, id) end
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
