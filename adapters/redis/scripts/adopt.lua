-- adopt.lua makes claim ARGV[5] the holder of the TTL lease of token
-- ARGV[4] if it is not revoked: the claim and node change, the token,
-- owner, TTL and age stay, the key expires a full TTL from now, and the
-- previous holder's Locker is told ("adopted <its claim>"); an
-- election's observers are told of the new holder.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] token
-- ARGV[5] the adopter's new claim ID
-- ARGV[6] the adopter's node (Config.Node)
--
-- A holder of a semaphore or read-write lock (holders.lua) gets the new
-- claim and node in its entries, and its deadline in the held set.
--
-- Returns {'adopted', ttl ms, type, slot} (type: the lease's, 'mutex' if
-- it has none; slot: a permit's, -1 for any other lease), {'gone'} (the
-- token does not hold the name), {'session'} (a session lease) or
-- {'revoked'}.

-- adopt_holder adopts holder token of a group of type typ.
local function adopt_holder(typ)
  local now = now_ms()
  regroup(now)
  local token = ARGV[4]
  local m = member(token)
  if not m then return {'gone'} end
  local ttl = tonumber(m[2])
  if ttl <= 0 then return {'session'} end
  if redis.call('HEXISTS', KEYS[2], 'r:' .. token) == 1 then return {'revoked'} end
  redis.call('HDEL', KEYS[2], 'c:' .. m[4])
  redis.call('HSET', KEYS[2], 'h:' .. token,
    m[1] .. '\n' .. m[2] .. '\n' .. m[3] .. '\n' .. ARGV[5] .. '\n' .. ARGV[6] .. '\n' .. m[6],
    'c:' .. ARGV[5], token)
  if redis.call('HGET', KEYS[2], 'token') == token then -- the newest holder, mirrored
    redis.call('HSET', KEYS[2], 'claim', ARGV[5], 'node', ARGV[6])
  end
  -- a whole TTL from now: at least the old deadline (the last grant or
  -- renewal + that TTL), so the keys' expiry only grows
  redis.call('ZADD', KEYS[8], 'XX', num(now + ttl), token)
  outlive(now + ttl, now)
  tell(m[4], 'adopted ' .. m[4])
  local slot = -1
  if m[1] ~= '' then slot = tonumber(m[1]) end
  return {'adopted', ttl, typ, slot}
end

local e = check_epoch()
if e then return {'epoch', e} end
local typ = group_type()
if typ then return adopt_holder(typ) end
local h = redis.call('HMGET', KEYS[2], 'token', 'claim', 'ttl', 'revoked', 'type')
if h[1] ~= ARGV[4] then return {'gone'} end
local ttl = tonumber(h[3] or '0')
if ttl <= 0 then return {'session'} end
if h[4] then return {'revoked'} end
redis.call('HSET', KEYS[2], 'claim', ARGV[5], 'node', ARGV[6])
redis.call('PEXPIRE', KEYS[2], ttl)
tell(h[2] or '', 'adopted ' .. (h[2] or ''))
count_change(h[5]) -- a new holder: a change for an election's observers
return {'adopted', ttl, h[5] or 'mutex', -1}
