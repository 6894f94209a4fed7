-- group.lua grants claim ARGV[4] a permit of a semaphore or a read or
-- write lease of a read-write lock (a group: holders.lua), first come,
-- first served; in mode 'wait' it queues the claim, in mode 'try' it
-- grants only if nobody is queued and there is room.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] claim ID
-- ARGV[5] owner
-- ARGV[6] lease TTL in ms (the holder's deadline from now)
-- ARGV[7] lease kind: its TTL in ms, 0 for a session lease
-- ARGV[8] mode: 'wait' or 'try'
-- ARGV[9] waiter heartbeat TTL in ms
-- ARGV[10] the caller's node (Config.Node)
-- ARGV[11] the type asked for: 'semaphore' or 'read-write lock'
-- ARGV[12] a semaphore's limit, or 'read' or 'write'
--
-- Returns {'granted', token, time left ms, slot (-1: none)}, {'held',
-- time left of the earliest holder ms (0: none), waiters}, {'type', live
-- type} or {'limit', the limit in force} (nothing was done).

local e = check_epoch()
if e then return {'epoch', e} end
local now = now_ms()
prune(now)
regroup(now)
local claim, mode, typ, arg = ARGV[4], ARGV[8], ARGV[11], ARGV[12]

-- claimed answers the caller's grant of token. The caller is alive (it is
-- calling), so its grant runs its whole TTL from now, not the heartbeat
-- time left that the hand-off cut it to (heartbeat_px): else a TTL lease
-- would end early, as a TTL is not renewed. A revoked grant is left as is.
local function claimed(token)
  if redis.call('HEXISTS', KEYS[2], 'r:' .. token) == 0 then
    redis.call('ZADD', KEYS[8], 'XX', num(now + tonumber(ARGV[6])), token)
    outlive(now + tonumber(ARGV[6]), now)
  end
  return granted(token, now)
end

local live = live_type()
if live and live ~= typ then return {'type', live} end
if typ == 'semaphore' and live then -- the limit in force: the lease's, else the head's
  local limit = redis.call('HGET', KEYS[2], 'limit')
  if not limit then
    local head = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
    limit = split(redis.call('HGET', KEYS[7], 'g:' .. head) or '', 4)[2]
  end
  if limit ~= arg then return {'limit', limit} end
end
local mine = redis.call('HGET', KEYS[2], 'c:' .. claim)
if mine then return claimed(mine) end -- a hand-off, or a retried call
if mode == 'wait' then
  if not redis.call('ZSCORE', KEYS[4], claim) then
    redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[6]), claim)
  end
  redis.call('ZADD', KEYS[5], now + tonumber(ARGV[9]), claim)
  redis.call('HSETNX', KEYS[7], claim, details(now, ARGV[10], ARGV[5]))
  redis.call('HSET', KEYS[7], 'g:' .. claim, group_entry(typ, arg, ARGV[6], ARGV[7]))
  admit(now) -- grants the claim only if everyone ahead was admitted too
  mine = redis.call('HGET', KEYS[2], 'c:' .. claim)
else
  admit(now) -- a wake-up may have been lost
  if redis.call('ZCARD', KEYS[4]) == 0 and room(typ, arg) then
    mine = join(claim, ARGV[5], ARGV[6], ARGV[7], ARGV[10], typ, arg, now)
  end
end
tidy()
if mine then return claimed(mine) end
local first = redis.call('ZRANGE', KEYS[8], 0, 0, 'WITHSCORES')
local left = 0
if first[2] then left = math.max(0, tonumber(first[2]) - now) end
return {'held', left, redis.call('ZCARD', KEYS[4])}
