-- inspect.lua prunes dead waiters and reads the lease and the queue
-- length in one step.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- (no further arguments)
--
-- Returns {'free', waiters} or {'held', waiters, token, owner, kind, pttl,
-- claim, fence}: kind is the lease's TTL in ms, 0 for a session lease;
-- fence is the Redlock token, 0 if none.

local e = check_epoch()
if e then return {'epoch', e} end
if prune(now_ms()) > 0 then wake() end
tidy()
local n = redis.call('ZCARD', KEYS[4])
if redis.call('EXISTS', KEYS[2]) == 0 then return {'free', n} end
local h = redis.call('HMGET', KEYS[2], 'token', 'owner', 'ttl', 'claim', 'fence')
return {'held', n, tonumber(h[1]), h[2], tonumber(h[3]), redis.call('PTTL', KEYS[2]), h[4], tonumber(h[5] or '0')}
