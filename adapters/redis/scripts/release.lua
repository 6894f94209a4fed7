-- release.lua deletes the lease if its token is ARGV[4] and wakes the
-- head waiter.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] token
--
-- Returns {'ok'} or {'gone'}.

local e = check_epoch()
if e then return {'epoch', e} end
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[4] then return {'gone'} end
redis.call('DEL', KEYS[2])
prune(now_ms())
wake()
tidy()
return {'ok'}
