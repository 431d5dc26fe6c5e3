/**
 * The Lua sources of RedisStore. Every session operation is one of these scripts on ONE key, the
 * session's hash, so it runs as one atomic step on the master that holds that key, and sessions spread
 * over every master of a cluster (each has a hash tag of its own). Scripts never build key names: every
 * key they touch is passed in KEYS (ioredis adds the client keyPrefix and routes by it).
 *
 * Session hash `<prefix>s:{<recordId>}` (layout format 2, see FORMAT_VERSION in redis-store.ts):
 *   sb  sandbox              ca  createdAt             ls  lastSeenAt
 *   it  idle ttl (ms)        ax  absoluteExpiresAt      xp  how far the key's Redis expiry reaches (see touch)
 *   k   current token key    s   '1' once the current token has been presented, else '0'
 *   p   earlier tokens, oldest first (at most MAX_PAST rotated, MAX_RETIRED retired), fixed-width entries (see the prelude)
 *   uk  digest of the user id (names the user index key), when the session has a user
 *   u   sealed user id       ms  seal binding sandbox + idle ttl     mt  seal binding createdAt + absolute
 *   d:<field>   one sealed top-level data key (field = digest of the key's name)
 * A tombstone is the same key holding only `x`: written by revokeUser in place of a session it ended or
 * did not find, so that a create still on its way to Redis (sent before, run after) is born revoked.
 *
 * User index `<prefix>u:{<uk>}`: a sorted set of record ids scored by an upper bound of the session's
 * absolute deadline. It lives in another slot, so no session script touches it; see redis-store.ts for
 * the order of writes that keeps revokeUser complete.
 *
 * The rotation rules are those of lib/store/rotation.ts (matchToken, chainOf, markPresented, rotate,
 * mayMigrate, retireAll), transcribed; the conformance suite holds both stores to them.
 *
 * Times are compared with the `now` passed in, and the key's Redis expiry is set relative to it
 * (PEXPIRE target - now), never past the absolute deadline. Numbers are written with
 * string.format('%d') to keep them exact integers.
 */
import { MAX_PAST_TOKENS } from '../contract.js'
import { MAX_RETIRED_TOKENS } from '../rotation.js'

/**
 * maxSessionsPerUser on Redis: a session marked to end by a sign-in that has not ended it this long
 * after is handed out again by the user's next sign-in (its first sign-in died in between).
 */
export const RECLAIM_MARKS_MS = 10_000

/** Length of a token key as the store passes it to Lua (secretKeyOf: 16 bytes, base64url; see redis-store.ts keyArg). */
export const KEY_LENGTH = 22
/** Length of a grace box (sealForTokenHolder: 49 bytes, base64url); redis-store.ts checks every box. */
export const BOX_LENGTH = 66
/** One earlier token in the `p` field: deadline (15 digits), flag, key, box. */
export const ENTRY_WIDTH = 15 + 1 + KEY_LENGTH + BOX_LENGTH

const PRELUDE = `
local MAX_PAST = ${MAX_PAST_TOKENS}
local MAX_RETIRED = ${MAX_RETIRED_TOKENS}
local W = ${ENTRY_WIDTH}
local RETIRED_FILL = string.rep('.', ${BOX_LENGTH})
local function int (n) return string.format('%d', n) end

-- The earlier tokens live in one string field, p: fixed-width entries, oldest first, each
--   deadline (15 digits, zero-padded) .. flag ('r' rotated, with a box; 'x' retired) .. key .. box
-- (a retired entry has filler for a box). Fixed width, so the scripts slice instead of parsing: the
-- hot path never decodes the list (Redis's Lua is slow at building strings and tables, C is not).
local function pastCount (p)
  if not p then return 0 end
  local n = #p / W
  if n ~= math.floor(n) then return nil end
  return n
end
local function untilAt (p, i) local o = (i - 1) * W return tonumber(string.sub(p, o + 1, o + 15)) end
local function rotatedAt (p, i) return string.byte(p, (i - 1) * W + 16) == 114 end
local function keyAt (p, i) local o = (i - 1) * W return string.sub(p, o + 17, o + 16 + ${KEY_LENGTH}) end
local function boxAt (p, i) local o = (i - 1) * W return string.sub(p, o + 17 + ${KEY_LENGTH}, o + W) end
local function entryOf (u, key, box)
  if box then return string.format('%015d', u) .. 'r' .. key .. box end
  return string.format('%015d', u) .. 'x' .. key .. RETIRED_FILL
end
-- p with the deadline of entry i replaced
local function withUntil (p, i, u)
  local o = (i - 1) * W
  return string.sub(p, 1, o) .. string.format('%015d', u) .. string.sub(p, o + 16)
end

-- chainFrom: the boxes from entry i to the current token
local function chainFrom (p, n, i)
  local chain = {}
  for j = i, n do chain[#chain + 1] = boxAt(p, j) end
  return chain
end

local function deadline (s) return math.min(s.ls + s.it, s.ax) end

-- lastSeenAt := now, with the other changed fields, in one HSET. The key's Redis expiry reaches the
-- logical time xp; when the deadline passes xp it is pushed to the deadline plus an eighth of the idle
-- ttl, never past the absolute cap, so a busy session refreshes its expiry once per idleTtl/8 of use.
-- Callers have checked that the session is before its deadline, so the expiry set is in the future.
local function touch (key, s, now, fields)
  s.ls = now
  fields[#fields + 1] = 'ls'
  fields[#fields + 1] = int(now)
  local due = deadline(s)
  local pexpire = false
  if due > s.xp then
    s.xp = math.min(due + math.floor(s.it / 8), s.ax)
    fields[#fields + 1] = 'xp'
    fields[#fields + 1] = int(s.xp)
    pexpire = true
  end
  redis.call('HSET', key, unpack(fields))
  if pexpire then redis.call('PEXPIRE', key, int(s.xp - now)) end
end

-- runs command(key, items...) in chunks, below Lua's unpack limit
local function chunked (command, key, items)
  for i = 1, #items, 1000 do
    redis.call(command, key, unpack(items, i, math.min(i + 999, #items)))
  end
end

-- sets fields from ARGV[from..to] (field, value pairs) on a hash
local function hsetPairs (key, from, to)
  if from > to then return end
  local args = {}
  for i = from, to do args[#args + 1] = ARGV[i] end
  chunked('HSET', key, args)
end

-- the timing fields of a session as numbers (s), or nil when they are missing or damaged
local function times (ls, it, ax, xp)
  local s = { ls = tonumber(ls), it = tonumber(it), ax = tonumber(ax), xp = tonumber(xp) or 0 }
  if not (s.ls and s.it and s.ax) then return nil end
  return s
end
`

/**
 * KEYS: session. ARGV: sandbox, tokenKey, now, idleTtl, absoluteExpiresAt, uk|'', u|'', ms, mt, then data
 * field/value pairs. Returns 1; 0 when the session is already past its deadline or a revocation fenced
 * the record (then nothing is written).
 * Idempotent: the engine creates a record once, so a copy resent by the client after a reconnect only
 * rewrites the same session.
 */
const create = `${PRELUDE}
local key = KEYS[1]
local now, it, ax = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('HEXISTS', key, 'x') == 1 then return 0 end
redis.call('DEL', key)
if math.min(now + it, ax) <= now then return 0 end
local fields = { 'sb', ARGV[1], 'ca', ARGV[3], 'it', ARGV[4], 'ax', ARGV[5], 'k', ARGV[2], 's', '0', 'p', '',
  'ms', ARGV[8], 'mt', ARGV[9] }
if ARGV[6] ~= '' then
  fields[#fields + 1] = 'uk'
  fields[#fields + 1] = ARGV[6]
  fields[#fields + 1] = 'u'
  fields[#fields + 1] = ARGV[7]
end
hsetPairs(key, 10, #ARGV)
touch(key, { ls = now, it = it, ax = ax, xp = 0 }, now, fields)
return 1
`

/**
 * KEYS: session. ARGV: tokenKey, now, sandbox|'', revokeOnReuse '1'|'0', gracePeriod.
 * ARGV[6]: the field of the device data key. Returns {0} none | {1, all} live | {2, all, chain} grace |
 * {3, sandbox, u|nil, revoked, uk|nil, device field|nil} reused,
 * where all is the session hash as HGETALL read it (before this script's own writes).
 */
const resolve = `${PRELUDE}
local key = KEYS[1]
local tk, now, sandbox, revoke, grace = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4] == '1', tonumber(ARGV[5])
local all = redis.call('HGETALL', key)
if #all == 0 then return { 0 } end
local h = {}
for i = 1, #all, 2 do h[all[i]] = all[i + 1] end
if h.x or not h.sb or not h.k then return { 0 } end
local s = times(h.ls, h.it, h.ax, h.xp)
if s == nil then return { 0 } end
if deadline(s) <= now then
  redis.call('DEL', key)
  return { 0 }
end
-- matchToken
local n = pastCount(h.p)
if n == nil then return { 0 } end
local kind, chain = 'reused', nil
if tk == h.k then
  kind = 'current'
else
  for i = n, 1, -1 do
    if keyAt(h.p, i) == tk then
      if untilAt(h.p, i) <= now then
        -- the last rotation, its successor never presented: nobody used the session since, no theft
        if i == n and rotatedAt(h.p, i) and h.s ~= '1' then kind = 'retired' else kind = 'reused' end
      elseif not rotatedAt(h.p, i) then kind = 'retired'
      else
        kind = 'rotated'
        chain = chainFrom(h.p, n, i)
      end
      break
    end
  end
end
if kind == 'retired' then return { 0 } end
if kind == 'reused' then
  if revoke then redis.call('DEL', key) end
  return { 3, h.sb, h.u or false, revoke and 1 or 0, h.uk or false, h[ARGV[6]] or false }
end
if sandbox ~= '' and h.sb ~= sandbox then return { 0 } end
local fields = {}
if kind == 'current' and h.s ~= '1' then
  -- markPresented: the first time, the predecessor gets the grace period from now on
  fields[1] = 's'
  fields[2] = '1'
  if n > 0 and rotatedAt(h.p, n) then
    fields[3] = 'p'
    fields[4] = withUntil(h.p, n, math.min(untilAt(h.p, n), now + grace))
  end
end
touch(key, s, now, fields)
if kind == 'current' then return { 1, all } end
return { 2, all, chain }
`

/**
 * KEYS: session. ARGV: tokenKey, now, rotate '1'|'0', newKey, box, unseenWindow, nDel, deleted fields...,
 * then field/value pairs to set. Returns {0} gone | {1, expiresAt} rotated | {2, expiresAt, chain|nil}.
 */
const commit = `${PRELUDE}
local key = KEYS[1]
local tk, now = ARGV[1], tonumber(ARGV[2])
local v = redis.call('HMGET', key, 'sb', 'ls', 'it', 'ax', 'xp', 'k', 'p', 'x')
if not v[1] or not v[6] or v[8] then return { 0 } end
local s = times(v[2], v[3], v[4], v[5])
if s == nil then return { 0 } end
if deadline(s) <= now then
  redis.call('DEL', key)
  return { 0 }
end
local cur, p = v[6], v[7] or ''
local n = pastCount(p)
if n == nil then return { 0 } end
local nDel = tonumber(ARGV[7])
if nDel > 0 then
  local deleted = {}
  for i = 8, 7 + nDel do deleted[#deleted + 1] = ARGV[i] end
  chunked('HDEL', key, deleted)
end
hsetPairs(key, 8 + nDel, #ARGV)
if ARGV[3] == '1' and tk == cur then
  -- rotate (rotation.ts pruned + rotate): retired tokens past their deadline go one by one, rotated
  -- ones only as a leading run (a later one still carries the box an older one needs); with MAX_PAST
  -- rotated tokens kept, no rotation. Usually what goes is a leading run: the rest is then one slice.
  local leading, rotatedKept, firstKept, gap = true, 0, nil, false
  local keep = {}
  for i = 1, n do
    local k
    if rotatedAt(p, i) then
      k = not leading or untilAt(p, i) > now
      if k then
        leading = false
        rotatedKept = rotatedKept + 1
      end
    else
      k = untilAt(p, i) > now
    end
    keep[i] = k
    if k then firstKept = firstKept or i elseif firstKept then gap = true end
  end
  if rotatedKept < MAX_PAST then
    local kept
    if not gap then
      kept = firstKept and string.sub(p, (firstKept - 1) * W + 1) or ''
    else
      local parts = {}
      for i = 1, n do
        if keep[i] then parts[#parts + 1] = string.sub(p, (i - 1) * W + 1, i * W) end
      end
      kept = table.concat(parts)
    end
    touch(key, s, now, { 'k', ARGV[4], 's', '0', 'p', kept .. entryOf(now + tonumber(ARGV[6]), cur, ARGV[5]) })
    return { 1, deadline(s) }
  end
end
touch(key, s, now, {})
if tk == cur then return { 2, deadline(s), {} } end
-- chainOf
for i = 1, n do
  if keyAt(p, i) == tk then
    if not rotatedAt(p, i) then return { 2, deadline(s), false } end
    return { 2, deadline(s), chainFrom(p, n, i) }
  end
end
return { 2, deadline(s), false }
`

/**
 * KEYS: session. ARGV: tokenKey, from, to, newKey, retiredUntil, idleTtl, now, ms, replaceData '1'|'0',
 * uk|'', u|'', then data field/value pairs. Returns 1 when moved, else 0.
 * A copy of a migration that already ran (resent after a reconnect) finds its own newKey current and
 * answers 1 without changing anything: newKey is fresh for every call, so nothing else can match it.
 */
const migrate = `${PRELUDE}
local key = KEYS[1]
local tk, now, retiredUntil = ARGV[1], tonumber(ARGV[7]), tonumber(ARGV[5])
local v = redis.call('HMGET', key, 'sb', 'ls', 'it', 'ax', 'xp', 'k', 'p', 'x', 'uk')
if not v[1] or not v[6] or v[8] then return 0 end
if v[6] == ARGV[4] then return 1 end
local s = times(v[2], v[3], v[4], v[5])
if s == nil then return 0 end
if deadline(s) <= now then
  redis.call('DEL', key)
  return 0
end
if v[1] ~= ARGV[2] then return 0 end
local cur, p = v[6], v[7] or ''
local n = pastCount(p)
if n == nil then return 0 end
-- mayMigrate: the current token, or a rotated one (retired ones may not)
local may = tk == cur
if not may then
  for i = 1, n do
    if keyAt(p, i) == tk and rotatedAt(p, i) then may = true end
  end
end
if not may then return 0 end
-- retireAll: every token still within its deadline retired (rotated ones until retiredUntil, retired ones
-- keep their own deadline), then the current one; at most MAX_RETIRED, the oldest dropped first
local retired = {}
for i = 1, n do
  if untilAt(p, i) > now then
    if rotatedAt(p, i) then retired[#retired + 1] = entryOf(retiredUntil, keyAt(p, i), false)
    else retired[#retired + 1] = string.sub(p, (i - 1) * W + 1, i * W) end
  end
end
retired[#retired + 1] = entryOf(retiredUntil, cur, false)
local kept = {}
for i = math.max(1, #retired - MAX_RETIRED + 1), #retired do kept[#kept + 1] = retired[i] end
if ARGV[9] == '1' then
  local old = {}
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if string.sub(f, 1, 2) == 'd:' then old[#old + 1] = f end
  end
  chunked('HDEL', key, old)
  hsetPairs(key, 12, #ARGV)
end
local fields = { 'sb', ARGV[3], 'it', ARGV[6], 'k', ARGV[4], 's', '0', 'p', table.concat(kept), 'ms', ARGV[8] }
if ARGV[10] ~= '' and ARGV[10] ~= v[9] then
  fields[#fields + 1] = 'uk'
  fields[#fields + 1] = ARGV[10]
  fields[#fields + 1] = 'u'
  fields[#fields + 1] = ARGV[11]
end
s.it = tonumber(ARGV[6])
s.xp = 0
touch(key, s, now, fields)
return 1
`

/** KEYS: session. Returns {1, uk|nil} when a session ended, else {0}. */
const destroy = `
local v = redis.call('HMGET', KEYS[1], 'sb', 'x', 'uk')
if not v[1] or v[2] then return { 0 } end
redis.call('DEL', KEYS[1])
return { 1, v[3] }
`

/**
 * revokeUser, for one record of the user's index. KEYS: session. ARGV: uk, now, the index entry's score.
 * Returns 2 when it ended a live session of the user, 1 when it removed one past its deadline, 3 when
 * there was no session (a tombstone now fences the record), 0 when the record names another user (or
 * none) and was left alone. After 1, 2 and 3 the record can never name the user again, so its index
 * entry may go. The tombstone lasts as long as the session could: a create still on its way to Redis
 * for this record is then born revoked.
 */
const revokeOne = `${PRELUDE}
local key = KEYS[1]
local now = tonumber(ARGV[2])
local v = redis.call('HMGET', key, 'sb', 'ls', 'it', 'ax', 'uk', 'x')
if v[6] then return 3 end
local stop, ended
if not v[1] then
  stop, ended = tonumber(ARGV[3]), 3
else
  if v[5] ~= ARGV[1] then return 0 end
  local s = times(v[2], v[3], v[4], 0)
  if s == nil then
    stop, ended = tonumber(ARGV[3]), 1
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

/**
 * KEYS: user index. ARGV: record id, score (an upper bound of its absolute deadline), now. Drops entries
 * past their score, adds the record (never lowering its score) and lets the key expire with its highest
 * score. Returns 1, or 0 when the score is already past.
 */
const indexAdd = `
local key, member, score, now = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[3])
if score <= now then return 0 end
local old = redis.call('ZSCORE', key, member)
if not old or tonumber(old) < score then redis.call('ZADD', key, ARGV[2], member) end
local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', key, string.format('%d', tonumber(top[2]) - now))
return 1
`

/**
 * maxSessionsPerUser: the count and the decision, in the user's slot. KEYS: user index, limit set (same
 * hash tag). ARGV: record id, score (as indexAdd), now, max, 'refuse'|'end-oldest', then ids known dead.
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
const admit = `
local u, l, id, now, max = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local score = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', u, '-inf', ARGV[3])
for i = 6, #ARGV do
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
    if ARGV[5] == 'refuse' then
      local refused = redis.call('ZRANGEBYSCORE', l, 0, '+inf', 'WITHSCORES')
      table.insert(refused, 1, 2)
      return refused
    end
    for i = 1, #counted - max + 1 do
      redis.call('ZADD', l, string.format('%d', -now), counted[i])
      reply[#reply + 1] = counted[i]
    end
  end
  redis.call('ZADD', l, ARGV[3], id)
end
local old = redis.call('ZSCORE', u, id)
if not old or tonumber(old) < score then redis.call('ZADD', u, ARGV[2], id) end
local top = redis.call('ZRANGE', u, -1, -1, 'WITHSCORES')
local ttl = string.format('%d', tonumber(top[2]) - now)
redis.call('PEXPIRE', u, ttl)
redis.call('PEXPIRE', l, ttl)
return reply
`

/** KEYS: user index, limit set. ARGV: ids whose records are ended: they leave both. */
const admitDone = `
for i = 1, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
return 1
`

/**
 * KEYS: session. ARGV: now, until. Fences a record that is not there (a tombstone until `until`), so a
 * create still on its way is born revoked: 1 when fenced (or already a tombstone), 0 when it exists.
 */
const fence = `
local v = redis.call('HMGET', KEYS[1], 'sb', 'x')
if v[2] then return 1 end
if v[1] then return 0 end
redis.call('HSET', KEYS[1], 'x', '1')
redis.call('PEXPIRE', KEYS[1], string.format('%d', tonumber(ARGV[2]) - tonumber(ARGV[1])))
return 1
`

/** KEYS: user index. ARGV: now. Drops entries past their score; returns {member, score, ...}. */
const indexRead = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
`

/**
 * Rewrites sealed fields under the newest key after a secret rotation, only where they still hold what
 * was read (compare and set), so a concurrent write is never undone and nothing deleted comes back.
 * KEYS: the hash. ARGV: field, old value, new value, ... Returns how many were rewritten.
 */
const reseal = `
local done = 0
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    done = done + 1
  end
end
return done
`

/** KEYS: value. ARGV: now. The sealed value, or nil (an expired one is deleted). */
const kvGet = `
local v = redis.call('HMGET', KEYS[1], 'e', 'v')
if not v[1] then return false end
if tonumber(v[1]) <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return false
end
return v[2]
`

/** KEYS: value. ARGV: now, ttl, sealed value. */
const kvSet = `
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('DEL', KEYS[1])
if ttl <= 0 then return 0 end
redis.call('HSET', KEYS[1], 'e', string.format('%d', now + ttl), 'v', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`

/** KEYS: value. ARGV: now, ttl, sealed value. 1 when set, 0 when a live value is there. */
const kvAdd = `
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local e = redis.call('HGET', KEYS[1], 'e')
if e and tonumber(e) > now then return 0 end
redis.call('DEL', KEYS[1])
if ttl <= 0 then return 1 end
redis.call('HSET', KEYS[1], 'e', string.format('%d', now + ttl), 'v', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`

/** KEYS: value. ARGV: now. The sealed value (now deleted), or nil. */
const kvTake = `
local v = redis.call('HMGET', KEYS[1], 'e', 'v')
if not v[1] then return false end
redis.call('DEL', KEYS[1])
if tonumber(v[1]) <= tonumber(ARGV[1]) then return false end
return v[2]
`

/** KEYS: counter. ARGV: now, window. Returns {count, resetAt}. */
const increment = `
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'n', 'r')
local n, r = tonumber(v[1]), tonumber(v[2])
if not n or not r or r <= now then
  n = 0
  r = now + window
end
n = n + 1
redis.call('HSET', KEYS[1], 'n', string.format('%d', n), 'r', string.format('%d', r))
redis.call('PEXPIRE', KEYS[1], string.format('%d', r - now))
return { n, r }
`

/**
 * KEYS: canary. ARGV: key id, sealed marker, layout format. Returns every field/value the canary held
 * before; when it held none, the format and the marker of the caller's newest key are written (the first
 * writer claims the prefix).
 */
const canary = `
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then redis.call('HSET', KEYS[1], 'format', ARGV[3], ARGV[1], ARGV[2]) end
return all
`

/** The scripts, by operation. */
export const SCRIPTS = {
  create,
  resolve,
  commit,
  migrate,
  destroy,
  revokeOne,
  indexAdd,
  indexRead,
  admit,
  admitDone,
  fence,
  reseal,
  kvGet,
  kvSet,
  kvAdd,
  kvTake,
  increment,
  canary
} as const

export type ScriptName = keyof typeof SCRIPTS
