-- prelude.lua: the helpers every script starts with; it is prepended to
-- each of the other files. Every script takes the same keys and the same
-- first three arguments:
--
-- KEYS[1] epoch: the store's epoch, a random string
-- KEYS[2] lease: the lease hash (token, owner, ttl, claim, fence)
-- KEYS[3] fence: the name's token counter
-- KEYS[4] queue: zset, claim ID -> arrival number
-- KEYS[5] beats: zset, claim ID -> heartbeat deadline (server ms)
-- KEYS[6] qseq:  the counter of arrival numbers
-- ARGV[1] the epoch the caller believes in ("" if it has none yet)
-- ARGV[2] a fresh epoch value, stored if the epoch key is missing
-- ARGV[3] the prefix of the wake-up channels ("<prefix>wake:")
--
-- and answers an array whose first element is a status string: {'epoch',
-- current} means the epoch differed and nothing else was done.
--
-- Times are the server's (TIME), in milliseconds. Claim IDs are
-- "<lockerID>/<n>"; a waiter is woken on channel ARGV[3] .. lockerID.

local function check_epoch()
  local cur = redis.call('GET', KEYS[1])
  if not cur then
    redis.call('SET', KEYS[1], ARGV[2])
    cur = ARGV[2]
  end
  if cur ~= ARGV[1] then return cur end
  return false
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- prune drops every waiter whose heartbeat deadline has passed.
local function prune(now)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
  for _, c in ipairs(dead) do
    redis.call('ZREM', KEYS[4], c)
    redis.call('ZREM', KEYS[5], c)
  end
  return #dead
end

-- tidy deletes the queue keys once nobody waits.
local function tidy()
  if redis.call('ZCARD', KEYS[4]) == 0 then
    redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
  end
end

-- wake tells the head waiter that the name is free.
local function wake()
  if redis.call('EXISTS', KEYS[2]) == 1 then return end
  local head = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
  if head then
    local locker = string.match(head, '^(.*)/[^/]*$')
    if locker then redis.call('PUBLISH', ARGV[3] .. locker, head) end
  end
end
