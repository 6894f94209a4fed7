-- proclaim.lua sets the value of the election's term if its token is
-- ARGV[4], its claim ARGV[5] and it is not revoked, counts the change
-- (ver) and tells the election's observers.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] token
-- ARGV[5] the holder's claim ID
-- ARGV[6] the new value
--
-- Returns {'ok'}, or as renew.lua {'gone'}, {'adopted'} or {'revoked'}.

local e = check_epoch()
if e then return {'epoch', e} end
local h = redis.call('HMGET', KEYS[2], 'token', 'claim', 'revoked')
if h[1] ~= ARGV[4] then return {'gone'} end
if h[2] ~= ARGV[5] then return {'adopted'} end
if h[3] then return {'revoked'} end
redis.call('HSET', KEYS[2], 'value', ARGV[6])
count_change('election')
return {'ok'}
