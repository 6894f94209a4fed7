-- revoke.lua marks the lease of token ARGV[4] revoked, lowers a TTL
-- lease's expiry to at most the grace ARGV[5] ms (a session lease keeps
-- its own: its holder cannot renew it any more), and tells the holder's
-- Locker ("revoked <claim>"); an election's observers are told (a new
-- ver: the term's expiry changed, and an observer's timer follows it). In
-- mode 'check' it only reports whether that revoked lease is still there.
-- A holder of a semaphore or read-write lock is marked in the lease hash
-- ('r:' .. token) and its deadline in the held set lowered (holders.lua).
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] token
-- ARGV[5] grace in ms
-- ARGV[6] mode: 'revoke' or 'check'
--
-- Returns {'revoked', pttl} while the lease of that token is there (and,
-- in mode 'check', revoked), else {'gone'}.

local e = check_epoch()
if e then return {'epoch', e} end
if group_type() then -- a holder of a semaphore or read-write lock
  local now = now_ms()
  regroup(now)
  local m = member(ARGV[4])
  if not m then return {'gone'} end
  local marked = redis.call('HEXISTS', KEYS[2], 'r:' .. ARGV[4]) == 1
  if ARGV[6] == 'check' then
    if not marked then return {'gone'} end
    return {'revoked', deadline(ARGV[4]) - now}
  end
  redis.call('HSET', KEYS[2], 'r:' .. ARGV[4], '1')
  if tonumber(m[2]) > 0 then
    local at = math.min(deadline(ARGV[4]), now + tonumber(ARGV[5]))
    redis.call('ZADD', KEYS[8], 'XX', num(at), ARGV[4])
    settle(now)
  end
  tell(m[4], 'revoked ' .. m[4])
  return {'revoked', deadline(ARGV[4]) - now}
end
local h = redis.call('HMGET', KEYS[2], 'token', 'claim', 'ttl', 'revoked', 'type')
if h[1] ~= ARGV[4] then return {'gone'} end
if ARGV[6] == 'check' then
  if not h[4] then return {'gone'} end -- another lease with that token (a reset)
  return {'revoked', redis.call('PTTL', KEYS[2])}
end
redis.call('HSET', KEYS[2], 'revoked', '1')
if tonumber(h[3] or '0') > 0 then
  local pttl = redis.call('PTTL', KEYS[2])
  if pttl < 0 or pttl > tonumber(ARGV[5]) then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end
end
tell(h[2] or '', 'revoked ' .. (h[2] or ''))
count_change(h[5])
return {'revoked', redis.call('PTTL', KEYS[2])}
