import { PRELUDE } from './common.js'
import { defineScript } from './define.js'

/**
 * revokeUser, for one record of the user's index.
 * Returns 2 when it ended a live session of the user, 1 when it removed one past its deadline, 3 when
 * there was no session (a tombstone now fences the record), 0 when the record names another user (or
 * none) and was left alone. After 1, 2 and 3 the record can never name the user again, so its index
 * entry may go. The tombstone lasts as long as the session could: a create still on its way to Redis
 * for this record is then born revoked.
 */
export const revokeOne = defineScript({
  prelude: PRELUDE,
  keys: ['key'],
  argv: {
    /** the digest of the user id the record must name */
    userKey: 'text',
    now: 'number',
    /** the index entry's score: how long a tombstone lasts when the record is missing or damaged */
    score: 'number'
  },
  body: `
local v = redis.call('HMGET', key, 'sb', 'ls', 'it', 'ax', 'uk', 'x')
if v[6] then return 3 end
local stop, ended
if not v[1] then
  stop, ended = score, 3
else
  if v[5] ~= userKey then return 0 end
  local s = times(v[2], v[3], v[4], 0)
  if s == nil then
    stop, ended = score, 1
  else
    stop = s.ax
    ended = deadline(s) > now and 2 or 1
  end
end
redis.call('DEL', key)
if stop > now then
  redis.call('HSET', key, 'x', '1')
  redis.call('PEXPIRE', key, int(stop - now))
end
return ended
`
})
