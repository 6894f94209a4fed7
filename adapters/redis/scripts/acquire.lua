-- acquire.lua grants the name to claim ARGV[4] if it is free and the claim
-- is at the head of the queue (or the queue is empty); otherwise, in a
-- queueing mode, queues the claim or refreshes its heartbeat.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] claim ID
-- ARGV[5] owner
-- ARGV[6] lease TTL in ms (PEXPIRE of the lease)
-- ARGV[7] lease kind: its TTL in ms, 0 for a session lease
-- ARGV[8] mode: 'wait', 'try', 'any' or 'tryany'
-- ARGV[9] waiter heartbeat TTL in ms
-- ARGV[10] the caller's node (Config.Node)
-- ARGV[11] the type asked for: 'mutex' or 'election'
-- ARGV[12] an election's value ('' for a mutex)
--
-- Modes: 'wait' queues the claim and grants only to the head of the queue;
-- 'try' does not queue and respects the queue; 'any' (Redlock) queues the
-- claim, so that it is counted, but grants to whoever asks first, and
-- leaves the claim queued until the Redlock grant is settled (fence.lua)
-- or given back (giveback.lua), so that a vote lost on other primaries
-- costs no place; 'tryany' (Redlock) neither queues nor respects the queue.
--
-- Returns {'granted', token, pttl}, {'held', pttl, waiters, holder's
-- claim}, {'queued', 0, waiters} (free, but another claim is ahead) or
-- {'type', live type} (the name lives as another type: nothing was done).

local e = check_epoch()
if e then return {'epoch', e} end
local now = now_ms()
prune(now)
local claim = ARGV[4]
local mode = ARGV[8]
local typ = ARGV[11]
local live = live_type()
if live and live ~= typ then return {'type', live} end
local fifo = mode == 'wait' or mode == 'try'
local function enqueue()
  if mode ~= 'wait' and mode ~= 'any' then return end
  if not redis.call('ZSCORE', KEYS[4], claim) then
    redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[6]), claim)
  end
  redis.call('ZADD', KEYS[5], now + tonumber(ARGV[9]), claim)
  redis.call('HSETNX', KEYS[7], claim, details(now, ARGV[10], ARGV[5]))
  if typ == 'election' then -- what wake() needs to elect it
    redis.call('HSET', KEYS[7], 'e:' .. claim, candidate(ARGV[6], ARGV[7], ARGV[12]))
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local h = redis.call('HMGET', KEYS[2], 'claim', 'token', 'revoked')
  if h[1] == claim then
    -- a retried call whose first attempt granted, or an election's
    -- hand-off (wake): the caller is alive (it is calling), so the lease
    -- runs its whole TTL from now, not the heartbeat time left that the
    -- hand-off cut it to (a TTL term is not renewed); a revoked one is
    -- left as is
    if not h[3] then redis.call('PEXPIRE', KEYS[2], ARGV[6]) end
    return {'granted', tonumber(h[2]), redis.call('PTTL', KEYS[2])}
  end
  enqueue()
  return {'held', redis.call('PTTL', KEYS[2]), redis.call('ZCARD', KEYS[4]), h[1]}
end
local head = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
if fifo and head and head ~= claim then
  enqueue()
  announce_if(nil, wake())
  return {'queued', 0, redis.call('ZCARD', KEYS[4])}
end
local token = grant(claim, ARGV[5], ARGV[6], ARGV[7], ARGV[10], typ, ARGV[12], now)
if mode ~= 'any' then -- in Redlock mode fenceScript dequeues the winner
  dequeue(claim)
  tidy()
end
announce_if(typ)
return {'granted', token, tonumber(ARGV[6])}
