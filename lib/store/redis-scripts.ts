/**
 * The Lua sources of RedisStore. Every multi-step operation is one of these scripts, so it runs as one
 * atomic step on the Redis server: no read-modify-write crosses a round trip.
 *
 * Key layout (B is the session base `<keyPrefix><prefix>{<prefix>}`, passed as ARGV[1]):
 *   B s:<sid>          hash: the session
 *     sb  sandbox              ca  createdAt             ls  lastSeenAt
 *     it  idle ttl (ms)        ax  absoluteExpiresAt      cur current token key
 *     xp  the logical time the Redis expiries of all the session's keys reach (see touch)
 *     rot JSON array of rotated token keys, oldest first (at most ROTATED_TOKENS_KEPT)
 *     uk  the user index key (a hash of the user id), when the session has a user
 *     u   sealed user id       ms  seal binding sandbox + idle ttl     mt  seal binding createdAt + absolute
 *     d:<field>   one sealed top-level data key (field = hash of the key name)
 *   B t:<tokenKey>     hash: a token entry
 *     sid the session          tm  seal binding this token key to sid
 *     nk, box, gu  once rotated: the next token key, the grace box, the grace deadline
 *   B u:<userHash>     set of sids of one user
 *
 * All session keys share the hash tag `{<prefix>}`, so on a Redis Cluster they live in one slot and a
 * script may go from a token entry to its session and on to the user index. Values and counters touch one
 * key per operation and carry no tag: they spread over the cluster.
 *
 * Times are compared with the `now` passed in (logical deadlines stored beside the data), and every key
 * also gets a Redis expiry, set relative to `now` (PEXPIRE target - now), so it disappears by itself:
 * values and counters at their deadline, session keys at most idleTtl/8 after it and never past the
 * absolute cap. Numbers are written with string.format('%d') to keep them exact integers.
 */
const ROTATED_TOKENS_KEPT = 16 // placeholder until RedisStore moves to the new contract

const PRELUDE = `
local B = ARGV[1]
local KEPT = ${ROTATED_TOKENS_KEPT}
local function int (n) return string.format('%d', n) end
local function skey (sid) return B .. 's:' .. sid end
local function tkey (k) return B .. 't:' .. k end

-- a session's fields as a table (rot still JSON text, see rotated), or nil when the key is gone
local function session (sid, h)
  return { sid = sid, sb = h[1], ca = tonumber(h[2]), ls = tonumber(h[3]), it = tonumber(h[4]),
    ax = tonumber(h[5]), cur = h[6], rotText = h[7], uk = h[8], xp = tonumber(h[9]) or 0 }
end

local function load (sid)
  local v = redis.call('HMGET', skey(sid), 'sb', 'ca', 'ls', 'it', 'ax', 'cur', 'rot', 'uk', 'xp')
  if not v[1] then return nil end
  return session(sid, v)
end

-- the same from one HGETALL, which is also returned (resolve sends the sealed fields on)
local function loadAll (sid)
  local all = redis.call('HGETALL', skey(sid))
  if #all == 0 then return nil, all end
  local h = {}
  for i = 1, #all, 2 do h[all[i]] = all[i + 1] end
  if not h.sb then return nil, all end
  return session(sid, { h.sb, h.ca, h.ls, h.it, h.ax, h.cur, h.rot, h.uk or false, h.xp }), all
end

-- the rotated token keys, oldest first (decoded only when needed)
local function rotated (s)
  if s.rot == nil then s.rot = cjson.decode(s.rotText) end
  return s.rot
end

local function deadline (s) return math.min(s.ls + s.it, s.ax) end

local function remove (s)
  local keys = { skey(s.sid), tkey(s.cur) }
  for _, k in ipairs(rotated(s)) do keys[#keys + 1] = tkey(k) end
  redis.call('DEL', unpack(keys))
  if s.uk then redis.call('SREM', s.uk, s.sid) end
end

-- the session if it is before its deadline; one found past it is removed
local function alive (s, now)
  if s == nil then return nil end
  if deadline(s) <= now then
    remove(s)
    return nil
  end
  return s
end

local function live (sid, now)
  return alive(load(sid), now)
end

-- lastSeenAt := now. The Redis expiries of all the session's keys (session, every token entry, user
-- index) reach the same logical time xp. When the deadline passes xp they are all pushed to the deadline
-- plus an eighth of the idle ttl, never past the absolute cap, so a busy session refreshes its expiries
-- once per idleTtl/8 of use instead of on every request.
local function touch (s, now)
  s.ls = now
  local fields = { 'ls', int(now) }
  local due = deadline(s)
  if due > s.xp then
    s.xp = math.min(due + math.floor(s.it / 8), s.ax)
    local ttl = int(s.xp - now)
    redis.call('PEXPIRE', skey(s.sid), ttl)
    redis.call('PEXPIRE', tkey(s.cur), ttl)
    for _, k in ipairs(rotated(s)) do redis.call('PEXPIRE', tkey(k), ttl) end
    if s.uk and redis.call('PTTL', s.uk) < s.xp - now then redis.call('PEXPIRE', s.uk, ttl) end
    fields[3] = 'xp'
    fields[4] = int(s.xp)
  end
  redis.call('HSET', skey(s.sid), unpack(fields))
end

-- grace boxes from a token entry to the current token; false when a link was forgotten
local function chain (key)
  local out = {}
  local e = redis.call('HMGET', key, 'sid', 'nk', 'box')
  while e[1] and e[2] do
    if #out > KEPT then return false end
    out[#out + 1] = e[3]
    e = redis.call('HMGET', tkey(e[2]), 'sid', 'nk', 'box')
  end
  if not e[1] then return false end
  return out
end

-- runs command(key, items...) in chunks, below Lua's unpack limit
local function chunked (command, key, items)
  for i = 1, #items, 1000 do
    redis.call(command, key, unpack(items, i, math.min(i + 999, #items)))
  end
end

-- sets fields from ARGV[from..to] (field, value pairs) on a hash
local function hsetPairs (key, from, to)
  local args = {}
  for i = from, to do args[#args + 1] = ARGV[i] end
  chunked('HSET', key, args)
end
`

/**
 * KEYS: session, token. ARGV: B, sid, sandbox, tokenKey, now, idleTtl, absoluteExpiresAt, userKey|'', u|'',
 * ms, mt, tm, then data field/value pairs. Returns 1, or 0 when the session is already past its deadline.
 */
const create = `${PRELUDE}
local sid, now = ARGV[2], tonumber(ARGV[5])
local old = load(sid)
if old then remove(old) end
redis.call('HSET', KEYS[1], 'sb', ARGV[3], 'ca', ARGV[5], 'ls', ARGV[5], 'it', ARGV[6], 'ax', ARGV[7],
  'cur', ARGV[4], 'rot', '[]', 'ms', ARGV[10], 'mt', ARGV[11])
hsetPairs(KEYS[1], 13, #ARGV)
redis.call('HSET', KEYS[2], 'sid', sid, 'tm', ARGV[12])
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[1], 'uk', ARGV[8], 'u', ARGV[9])
  redis.call('SADD', ARGV[8], sid)
end
local s = load(sid)
if deadline(s) <= now then
  remove(s)
  return 0
end
touch(s, now)
return 1
`

const resolvePayload = `
local function payload (s, all)
  local data, u, ms, mt = {}, false, false, false
  for i = 1, #all, 2 do
    local f = all[i]
    if string.sub(f, 1, 2) == 'd:' then
      data[#data + 1] = string.sub(f, 3)
      data[#data + 1] = all[i + 1]
    elseif f == 'u' then u = all[i + 1]
    elseif f == 'ms' then ms = all[i + 1]
    elseif f == 'mt' then mt = all[i + 1]
    end
  end
  return { s.sid, s.sb, s.ca, s.ls, s.it, s.ax, u, ms, mt, data }
end
`

/**
 * KEYS: token. ARGV: B, now, sandbox|'', revokeOnReuse '1'|'0'.
 * Returns {0} none | {1, session, tm} live | {2, session, tm, chain} grace | {3, sid, sandbox, u, revoked} reused,
 * where session = {sid, sandbox, createdAt, lastSeenAt, idleTtl, absolute, u, ms, mt, {field, value, ...}}.
 */
const resolve = `${PRELUDE}${resolvePayload}
local now, sandbox, revoke = tonumber(ARGV[2]), ARGV[3], ARGV[4] == '1'
local e = redis.call('HMGET', KEYS[1], 'sid', 'nk', 'gu', 'tm')
if not e[1] then return { 0 } end
local found, all = loadAll(e[1])
local s = alive(found, now)
if s == nil then
  redis.call('DEL', KEYS[1])
  return { 0 }
end
if e[2] and tonumber(e[3]) <= now then
  local u = false
  for i = 1, #all, 2 do
    if all[i] == 'u' then u = all[i + 1] end
  end
  if revoke then remove(s) end
  return { 3, s.sid, s.sb, u, revoke and 1 or 0 }
end
if sandbox ~= '' and s.sb ~= sandbox then return { 0 } end
touch(s, now)
if not e[2] then return { 1, payload(s, all), e[4] } end
return { 2, payload(s, all), e[4], chain(KEYS[1]) or {} }
`

/**
 * KEYS: session, presented token[, new token]. ARGV: B, sid, tokenKey, now, rotate '1'|'0', newKey, box,
 * graceUntil, tm (of the new key), nDel, deleted fields..., then field/value pairs to set.
 * Returns {0} gone | {1, expiresAt} rotated | {2, expiresAt, chain|nil}.
 */
const commit = `${PRELUDE}
local sid, tk, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
local s = live(sid, now)
if s == nil then return { 0 } end
local nDel = tonumber(ARGV[10])
if nDel > 0 then
  local fields = {}
  for i = 11, 10 + nDel do fields[#fields + 1] = ARGV[i] end
  chunked('HDEL', KEYS[1], fields)
end
hsetPairs(KEYS[1], 11 + nDel, #ARGV)
if ARGV[5] == '1' and s.cur == tk then
  local newKey = ARGV[6]
  redis.call('HSET', tkey(tk), 'nk', newKey, 'box', ARGV[7], 'gu', ARGV[8])
  redis.call('HSET', tkey(newKey), 'sid', sid, 'tm', ARGV[9])
  local rot = rotated(s)
  rot[#rot + 1] = tk
  if #rot > KEPT then redis.call('DEL', tkey(table.remove(rot, 1))) end
  s.cur = newKey
  redis.call('HSET', KEYS[1], 'cur', newKey, 'rot', cjson.encode(rot))
  touch(s, now)
  redis.call('PEXPIRE', tkey(newKey), int(s.xp - now))
  return { 1, deadline(s) }
end
touch(s, now)
if s.cur == tk then return { 2, deadline(s), {} } end
return { 2, deadline(s), chain(tkey(tk)) }
`

/**
 * KEYS: session, new token[, new user index]. ARGV: B, sid, from, to, newKey, idleTtl, now, ms, tm,
 * replaceData '1'|'0', userKey|'', u|'', then data field/value pairs. Returns 1 when moved, else 0.
 */
const migrate = `${PRELUDE}
local sid, now = ARGV[2], tonumber(ARGV[7])
local s = live(sid, now)
if s == nil or s.sb ~= ARGV[3] then return 0 end
local dead = { tkey(s.cur) }
for _, k in ipairs(rotated(s)) do dead[#dead + 1] = tkey(k) end
redis.call('DEL', unpack(dead))
if ARGV[10] == '1' then
  local old = {}
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(f, 1, 2) == 'd:' then old[#old + 1] = f end
  end
  chunked('HDEL', KEYS[1], old)
  hsetPairs(KEYS[1], 13, #ARGV)
end
if ARGV[11] ~= '' and ARGV[11] ~= s.uk then
  if s.uk then redis.call('SREM', s.uk, sid) end
  redis.call('SADD', ARGV[11], sid)
  redis.call('HSET', KEYS[1], 'uk', ARGV[11], 'u', ARGV[12])
  s.uk = ARGV[11]
end
s.sb, s.it, s.cur, s.rot, s.xp = ARGV[4], tonumber(ARGV[6]), ARGV[5], {}, 0
redis.call('HSET', KEYS[1], 'sb', ARGV[4], 'it', ARGV[6], 'cur', ARGV[5], 'rot', '[]', 'ms', ARGV[8])
redis.call('HSET', KEYS[2], 'sid', sid, 'tm', ARGV[9])
touch(s, now)
return 1
`

/** KEYS: session. ARGV: B, sid. Returns 1 when a session ended, else 0. */
const destroy = `${PRELUDE}
local s = load(ARGV[2])
if s == nil then return 0 end
remove(s)
return 1
`

/** KEYS: user index. ARGV: B, now, exceptSid|''. Returns how many live sessions ended. */
const revokeUser = `${PRELUDE}
local now, except = tonumber(ARGV[2]), ARGV[3]
local ended = 0
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if sid ~= except then
    local s = load(sid)
    if s == nil then
      redis.call('SREM', KEYS[1], sid)
    else
      if deadline(s) > now then ended = ended + 1 end
      remove(s)
    end
  end
end
return ended
`

/** KEYS: user index. ARGV: B, now. Returns {{sid, sandbox, createdAt, lastSeenAt, expiresAt}, ...}. */
const listUser = `${PRELUDE}
local now = tonumber(ARGV[2])
local out = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local s = load(sid)
  if s == nil then
    redis.call('SREM', KEYS[1], sid)
  elseif deadline(s) <= now then
    remove(s)
  else
    out[#out + 1] = { s.sid, s.sb, s.ca, s.ls, deadline(s) }
  end
end
return out
`

/**
 * Rewrites sealed fields under the newest key after a secret rotation, only where they still hold what
 * was read (compare and set), so a concurrent write is never undone and nothing deleted comes back.
 * KEYS: the hashes. ARGV: key index, field, old value, new value, ... Returns how many were rewritten.
 */
const reseal = `
local done = 0
for i = 1, #ARGV, 4 do
  local key = KEYS[tonumber(ARGV[i])]
  if redis.call('HGET', key, ARGV[i + 1]) == ARGV[i + 2] then
    redis.call('HSET', key, ARGV[i + 1], ARGV[i + 3])
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
 * KEYS: canary. ARGV: key id, sealed marker. Returns every field/value the canary held before; when it
 * held none, the marker of the caller's newest key is written (the first writer claims the prefix).
 */
const canary = `
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return all
`

/** The scripts, by operation. */
export const SCRIPTS = {
  create,
  resolve,
  commit,
  migrate,
  destroy,
  revokeUser,
  listUser,
  reseal,
  kvGet,
  kvSet,
  kvAdd,
  kvTake,
  increment,
  canary
} as const

export type ScriptName = keyof typeof SCRIPTS
