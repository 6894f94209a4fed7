-- floor.lua raises the fence counter to ARGV[4] if it is below, so that
-- the next grant's INCR gives a larger token (FloorToken); it never lowers
-- the counter and touches nothing else. The Go side keeps ARGV[4] at most
-- 2^52, where Lua's numbers (doubles) are exact.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] the floor
--
-- Returns {'ok', raised}: raised 1 if the counter was below the floor.

local e = check_epoch()
if e then return {'epoch', e} end
local c = tonumber(redis.call('GET', KEYS[3]) or '0')
if c < tonumber(ARGV[4]) then
  redis.call('SET', KEYS[3], ARGV[4])
  return {'ok', 1}
end
return {'ok', 0}
