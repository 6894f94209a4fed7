-- prelude.lua: the helpers every script starts with; it is prepended to
-- each of the other files. Every script but list.lua takes the same keys
-- and every script the same first three arguments:
--
-- KEYS[1] epoch: the store's epoch, a random string
-- KEYS[2] lease: the lease hash (token, owner, ttl, claim, since, node,
--                revoked once revoked; fence in Redlock mode)
-- KEYS[3] fence: the name's token counter
-- KEYS[4] queue: zset, claim ID -> arrival number
-- KEYS[5] beats: zset, claim ID -> heartbeat deadline (server ms)
-- KEYS[6] qseq:  the counter of arrival numbers
-- KEYS[7] claims: hash, claim ID -> "queued-at ms\nnode\nowner"; an entry
--                exists exactly while its claim is queued
-- ARGV[1] the epoch the caller believes in ("" if it has none yet)
-- ARGV[2] a fresh epoch value, stored if the epoch key is missing
-- ARGV[3] the prefix of the wake-up channels ("<prefix>wake:")
--
-- and answers an array whose first element is a status string: {'epoch',
-- current} means the epoch differed and nothing else was done.
--
-- Times are the server's (TIME), in milliseconds. Claim IDs are
-- "<lockerID>/<n>"; a waiter is woken on channel ARGV[3] .. lockerID, by
-- a message that is its claim ID; "revoked <claim>" and "adopted <claim>"
-- tell the Locker of a holder's claim that its lease was revoked or
-- adopted.

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

-- dequeue drops claim c from the queue, with its heartbeat and details.
local function dequeue(c)
  redis.call('ZREM', KEYS[4], c)
  redis.call('ZREM', KEYS[5], c)
  redis.call('HDEL', KEYS[7], c)
end

-- prune drops every waiter whose heartbeat deadline has passed.
local function prune(now)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
  for _, c in ipairs(dead) do dequeue(c) end
  return #dead
end

-- tidy deletes the queue keys once nobody waits.
local function tidy()
  if redis.call('ZCARD', KEYS[4]) == 0 then
    redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7])
  end
end

-- locker_of returns the Locker ID of a claim ID, or nil.
local function locker_of(claim)
  return string.match(claim, '^(.*)/[^/]*$')
end

-- tell publishes msg on the channel of the Locker of claim.
local function tell(claim, msg)
  local locker = locker_of(claim)
  if locker then redis.call('PUBLISH', ARGV[3] .. locker, msg) end
end

-- wake tells the head waiter that the name is free.
local function wake()
  if redis.call('EXISTS', KEYS[2]) == 1 then return end
  local head = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
  if head then tell(head, head) end
end

-- details encodes a waiter's details for KEYS[7]: the node has no control
-- characters, so the first two newlines split the three fields.
local function details(queued_at, node, owner)
  return string.format('%.0f', queued_at) .. '\n' .. node .. '\n' .. owner
end
