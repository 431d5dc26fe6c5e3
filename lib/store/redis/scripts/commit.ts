import { PRELUDE } from './common.js'
import { defineScript } from './define.js'

/**
 * Writes a request's changes to the session: deletes and sets data fields, rotates the token when
 * asked and the presented one is current. Returns {0} gone | {1, expiresAt} rotated |
 * {2, expiresAt, chain|nil} | {3} retired (the presented token may not write: nothing written). Who may
 * write is rotation.ts commitChain, transcribed.
 */
export const commit = defineScript({
  prelude: PRELUDE,
  keys: ['key'],
  argv: {
    /** the presented token's key */
    tokenKey: 'text',
    now: 'number',
    /** whether to rotate (then newKey, box and unseenWindow are set; else '', '', 0) */
    rotate: 'flag',
    /** the key of the new current token */
    newKey: 'text',
    /** the grace box of the token rotated out */
    box: 'text',
    /** how long the token rotated out stays valid while its successor is unseen (ms) */
    unseenWindow: 'number',
    /** the session's migration count (g) when the request was admitted, or -1 when unknown */
    migrations: 'number',
    /** the data fields to delete */
    deleted: 'list'
  },
  /** the data fields to set: field, value, ... */
  rest: 'written',
  body: `
local v = redis.call('HMGET', key, 'sb', 'ls', 'it', 'ax', 'xp', 'k', 'p', 'x', 'g')
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
-- commitChain: the current token (at = 0) or a rotated one the session keeps (at = its entry) may write;
-- a retired one may not; one the session no longer holds (at = -1) may only if no migration happened since
-- the request was admitted (its migration count g unchanged; -1, unknown: may not)
local at = nil
if tokenKey == cur then
  at = 0
else
  local found = false
  for i = 1, n do
    if keyAt(p, i) == tokenKey then
      found = true
      if rotatedAt(p, i) then at = i end
      break
    end
  end
  if not found and migrations >= 0 and (tonumber(v[9]) or 0) == migrations then at = -1 end
end
if at == nil then return { 3 } end
if deleted > 0 then
  local fields = {}
  for i = deletedFrom, deletedFrom - 1 + deleted do fields[#fields + 1] = ARGV[i] end
  chunked('HDEL', key, fields)
end
hsetPairs(key, writtenFrom, #ARGV)
if rotate and tokenKey == cur then
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
    touch(key, s, now, { 'k', newKey, 's', '0', 'p', kept .. entryOf(now + unseenWindow, cur, box) })
    return { 1, deadline(s) }
  end
end
touch(key, s, now, {})
if at == 0 then return { 2, deadline(s), {} } end
if at == -1 then return { 2, deadline(s), false } end
return { 2, deadline(s), chainFrom(p, n, at) }
`
})
