-- renew.lua extends the lease to ARGV[5] ms from now if its token is
-- ARGV[4], its claim ARGV[6] and it is not revoked; a holder of a
-- semaphore or read-write lock: its deadline in the held set.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] token
-- ARGV[5] lease TTL in ms; '0' only checks that the token holds the lease
-- ARGV[6] the holder's claim ID
--
-- Returns {'ok'}, {'gone'} (the token does not hold the name), {'adopted'}
-- (it does, for another claim: Adopt took it over) or {'revoked'} (Revoke
-- marked it: it is not extended any more).

local e = check_epoch()
if e then return {'epoch', e} end
if group_type() then -- a holder of a semaphore or read-write lock
  local now = now_ms()
  regroup(now)
  local m = member(ARGV[4])
  if not m then return {'gone'} end
  if m[4] ~= ARGV[6] then return {'adopted'} end
  if redis.call('HEXISTS', KEYS[2], 'r:' .. ARGV[4]) == 1 then return {'revoked'} end
  if ARGV[5] ~= '0' then
    redis.call('ZADD', KEYS[8], 'XX', num(now + tonumber(ARGV[5])), ARGV[4])
    outlive(now + tonumber(ARGV[5]), now) -- a holder's deadline only grows here
  end
  return {'ok'}
end
local h = redis.call('HMGET', KEYS[2], 'token', 'claim', 'revoked')
if h[1] ~= ARGV[4] then return {'gone'} end
if h[2] ~= ARGV[6] then return {'adopted'} end
if h[3] then return {'revoked'} end
if ARGV[5] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end
return {'ok'}
