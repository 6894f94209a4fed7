-- release.lua deletes the lease if its token is ARGV[4] and its claim
-- ARGV[5] (revoked or not), and wakes the head waiter (an election's
-- candidate is elected, a group's waiters admitted: see wake); an
-- election's observers are told. A holder of a semaphore or read-write
-- lock is dropped from the held set (holders.lua).
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] token
-- ARGV[5] the holder's claim ID
--
-- Returns {'ok'}, {'gone'} or {'adopted'} (the token holds the name for
-- another claim: Adopt took it over, and it is left alone).

local e = check_epoch()
if e then return {'epoch', e} end
if group_type() then -- a holder of a semaphore or read-write lock
  local now = now_ms()
  regroup(now)
  local m = member(ARGV[4])
  if not m then return {'gone'} end
  if m[4] ~= ARGV[5] then return {'adopted'} end
  drop(ARGV[4])
  settle(now)
  wake() -- admits every waiter there is room for now
  tidy()
  return {'ok'}
end
local h = redis.call('HMGET', KEYS[2], 'token', 'claim', 'type')
if h[1] ~= ARGV[4] then return {'gone'} end
if h[2] ~= ARGV[5] then return {'adopted'} end
redis.call('DEL', KEYS[2])
local elected = wake()
tidy()
announce_if(h[3], elected) -- the next term, or the empty seat
return {'ok'}
