/**
 * What the Lua sources of RedisStore share: the layout they work on, and the prelude of the session
 * scripts. Each script is a module of this folder, with the typed builder of its arguments (define.ts).
 *
 * The Lua sources of RedisStore. Every session operation is one of these scripts on ONE key, the
 * session's hash, so it runs as one atomic step on the master that holds that key, and sessions spread
 * over every master of a cluster (each has a hash tag of its own). Scripts never build key names: every
 * key they touch is passed in KEYS (ioredis adds the client keyPrefix and routes by it).
 *
 * Session hash `<prefix>s:{<recordId>}` (layout format 2, see REDIS_FORMAT_VERSION in layout.ts):
 *   sb  sandbox              ca  createdAt             ls  lastSeenAt
 *   it  idle ttl (ms)        ax  absoluteExpiresAt      xp  how far the key's Redis expiry reaches (see touch)
 *   k   current token key    s   '1' once the current token has been presented, else '0'
 *   p   earlier tokens, oldest first (at most MAX_PAST rotated, MAX_RETIRED retired), fixed-width entries (see the prelude)
 *   g   how many migrations the session has had (absent: none), for commit's rule on tokens it no longer holds
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
 * The rotation rules are those of lib/store/rotation.ts (matchToken, commitChain, markPresented, rotate,
 * mayMigrate, retireAll), transcribed; the conformance suite holds both stores to them.
 *
 * Times are compared with the `now` passed in, and the key's Redis expiry is set relative to it
 * (PEXPIRE target - now), never past the absolute deadline. Numbers are written with
 * string.format('%d') to keep them exact integers.
 */
import { MAX_PAST_TOKENS } from '../../contract.js'
import { MAX_RETIRED_TOKENS } from '../../rotation.js'
import { GRACE_BOX_LENGTH } from '../../../crypto/cipher.js'

/**
 * maxSessionsPerUser on Redis: a session marked to end by a sign-in that has not ended it this long
 * after is handed out again by the user's next sign-in (its first sign-in died in between).
 */
export const RECLAIM_MARKS_MS = 10_000

/** Length of a token key as the store passes it to Lua (secretKeyOf: 16 bytes, base64url; see codec.ts keyArg). */
export const KEY_LENGTH = 22
/** Length of a grace box (cipher.ts successorOf: 49 bytes, base64url); codec.ts boxArg checks every box. */
export const BOX_LENGTH = GRACE_BOX_LENGTH
/** One earlier token in the `p` field: deadline (15 digits), flag, key, box. */
export const ENTRY_WIDTH = 15 + 1 + KEY_LENGTH + BOX_LENGTH

/** Lua shared by the session scripts (put before their argument header). */
export const PRELUDE = `
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
