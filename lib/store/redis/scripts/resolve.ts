import { PRELUDE } from './common.js'
import { defineScript } from './define.js'

/**
 * Resolves a token on the session's hash. Returns {0} none | {1, all} live | {2, all, chain} grace |
 * {3, sandbox, u|nil, revoked, uk|nil, device field|nil} reused | {4, uk|nil} ended quietly (stale) |
 * {5} a token a migration retired (nothing changed),
 * where all is the session hash as HGETALL read it (before this script's own writes).
 */
export const resolve = defineScript({
  prelude: PRELUDE,
  keys: ['key'],
  argv: {
    /** the presented token's key */
    tokenKey: 'text',
    now: 'number',
    /** the sandbox the request needs, or '' for any */
    sandbox: 'text',
    /** whether a reused token ends the session */
    revokeOnReuse: 'flag',
    /** the grace period of the predecessor, from the first presentation of the current token */
    gracePeriod: 'number',
    /** the hash field of the device data key (returned on reuse) */
    deviceField: 'text'
  },
  body: `
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
if tokenKey == h.k then
  kind = 'current'
else
  for i = n, 1, -1 do
    if keyAt(h.p, i) == tokenKey then
      if untilAt(h.p, i) <= now then
        -- the token the latest rotation or migration replaced (the last entry), the current token never
        -- presented since: no theft to signal, but the session ends quietly (rotation.ts matchToken)
        if i == n and h.s ~= '1' then kind = 'stale' else kind = 'reused' end
      elseif not rotatedAt(h.p, i) then kind = 'retired'
      else
        kind = 'rotated'
        chain = chainFrom(h.p, n, i)
      end
      break
    end
  end
end
if kind == 'retired' then return { 5 } end
if kind == 'stale' then
  redis.call('DEL', key)
  return { 4, h.uk or false }
end
if kind == 'reused' then
  if revokeOnReuse then redis.call('DEL', key) end
  return { 3, h.sb, h.u or false, revokeOnReuse and 1 or 0, h.uk or false, h[deviceField] or false }
end
if sandbox ~= '' and h.sb ~= sandbox then return { 0 } end
local fields = {}
if kind == 'current' and h.s ~= '1' then
  -- markPresented: the first time, the predecessor gets the grace period from now on
  fields[1] = 's'
  fields[2] = '1'
  if n > 0 and rotatedAt(h.p, n) then
    fields[3] = 'p'
    fields[4] = withUntil(h.p, n, math.min(untilAt(h.p, n), now + gracePeriod))
  end
end
touch(key, s, now, fields)
if kind == 'current' then return { 1, all } end
return { 2, all, chain }
`
})
