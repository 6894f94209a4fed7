-- fence.lua (Redlock) raises the fence counter to at least ARGV[4], the
-- token of a grant on a majority, records that token in the lease if claim
-- ARGV[5] holds it, and dequeues the claim.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] token of the Redlock grant
-- ARGV[5] claim ID
--
-- Returns {'ok'}.

local e = check_epoch()
if e then return {'epoch', e} end
local c = tonumber(redis.call('GET', KEYS[3]) or '0')
if c < tonumber(ARGV[4]) then redis.call('SET', KEYS[3], ARGV[4]) end
if redis.call('HGET', KEYS[2], 'claim') == ARGV[5] then
  redis.call('HSET', KEYS[2], 'fence', ARGV[4])
end
dequeue(ARGV[5])
tidy()
return {'ok'}
