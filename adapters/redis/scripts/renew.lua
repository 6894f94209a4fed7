-- renew.lua extends the lease to ARGV[5] ms from now if its token is
-- ARGV[4].
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] token
-- ARGV[5] lease TTL in ms; '0' only checks that the token holds the lease
--
-- Returns {'ok'} or {'gone'}.

local e = check_epoch()
if e then return {'epoch', e} end
if redis.call('HGET', KEYS[2], 'token') == ARGV[4] then
  if ARGV[5] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end
  return {'ok'}
end
return {'gone'}
