package redis

import goredis "github.com/redis/go-redis/v9"

// Every script takes the same keys and the same first three arguments:
//
//	KEYS[1] epoch   KEYS[2] lease   KEYS[3] fence   KEYS[4] queue
//	KEYS[5] beats   KEYS[6] qseq
//	ARGV[1] the epoch the caller believes in ("" if it has none yet)
//	ARGV[2] a fresh epoch value, stored if the epoch key is missing
//	ARGV[3] the prefix of the wake-up channels ("<prefix>wake:")
//
// and answers an array whose first element is a status string; {'epoch',
// current} means the epoch differed and nothing else was done.
//
// Times are the server's (TIME), in milliseconds. Claim IDs are
// "<lockerID>/<n>"; a waiter is woken on channel ARGV[3] .. lockerID.
const prelude = `
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
`

// acquireScript grants the name to claim ARGV[4] if it is free and claim
// is at the head of the queue (or the queue is empty); otherwise, in wait
// mode, queues claim or refreshes its heartbeat.
//
//	ARGV[4] claim   ARGV[5] owner   ARGV[6] lease TTL in ms
//	ARGV[7] lease kind: its TTL in ms, 0 for a session lease
//	ARGV[8] mode   ARGV[9] waiter heartbeat TTL in ms
//
// Modes: "wait" queues claim and grants only to the head of the queue;
// "try" does not queue and respects the queue; "any" (Redlock) queues
// claim, so that it is counted, but grants to whoever asks first, and
// leaves the claim queued until the Redlock grant is settled (fenceScript)
// or given back (givebackScript), so that a vote lost on other primaries
// costs no place; "tryany" (Redlock) neither queues nor respects the queue.
//
// Answers {'granted', token, pttl}, {'held', pttl, waiters, holder's claim}
// or {'queued', 0, waiters} (free, but another claim is ahead).
var acquireScript = goredis.NewScript(prelude + `
local e = check_epoch()
if e then return {'epoch', e} end
local now = now_ms()
prune(now)
local claim = ARGV[4]
local mode = ARGV[8]
local fifo = mode == 'wait' or mode == 'try'
local function enqueue()
  if mode ~= 'wait' and mode ~= 'any' then return end
  if not redis.call('ZSCORE', KEYS[4], claim) then
    redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[6]), claim)
  end
  redis.call('ZADD', KEYS[5], now + tonumber(ARGV[9]), claim)
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local h = redis.call('HMGET', KEYS[2], 'claim', 'token')
  if h[1] == claim then
    -- a retried call whose first attempt granted
    return {'granted', tonumber(h[2]), redis.call('PTTL', KEYS[2])}
  end
  enqueue()
  return {'held', redis.call('PTTL', KEYS[2]), redis.call('ZCARD', KEYS[4]), h[1]}
end
local head = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
if fifo and head and head ~= claim then
  enqueue()
  wake()
  return {'queued', 0, redis.call('ZCARD', KEYS[4])}
end
local token = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], 'token', token, 'owner', ARGV[5], 'ttl', ARGV[7], 'claim', claim)
redis.call('PEXPIRE', KEYS[2], ARGV[6])
if mode ~= 'any' then -- in Redlock mode fenceScript dequeues the winner
  redis.call('ZREM', KEYS[4], claim)
  redis.call('ZREM', KEYS[5], claim)
  tidy()
end
return {'granted', token, tonumber(ARGV[6])}
`)

// renewScript extends the lease to ARGV[5] ms from now if its token is
// ARGV[4] (ARGV[5] "0": only checks that it is). Answers {'ok'} or {'gone'}.
var renewScript = goredis.NewScript(prelude + `
local e = check_epoch()
if e then return {'epoch', e} end
if redis.call('HGET', KEYS[2], 'token') == ARGV[4] then
  if ARGV[5] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end
  return {'ok'}
end
return {'gone'}
`)

// releaseScript deletes the lease if its token is ARGV[4] and wakes the
// head waiter. Answers {'ok'} or {'gone'}.
var releaseScript = goredis.NewScript(prelude + `
local e = check_epoch()
if e then return {'epoch', e} end
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[4] then return {'gone'} end
redis.call('DEL', KEYS[2])
prune(now_ms())
wake()
tidy()
return {'ok'}
`)

// withdrawScript removes claim ARGV[4] from the queue and deletes the lease
// if that claim holds it (a grant that raced a cancellation), then wakes the
// head waiter. Answers {'ok', released (0 or 1)}.
var withdrawScript = goredis.NewScript(prelude + `
local e = check_epoch()
if e then return {'epoch', e} end
local claim = ARGV[4]
redis.call('ZREM', KEYS[4], claim)
redis.call('ZREM', KEYS[5], claim)
local released = 0
if redis.call('HGET', KEYS[2], 'claim') == claim then
  redis.call('DEL', KEYS[2])
  released = 1
end
prune(now_ms())
wake()
tidy()
return {'ok', released}
`)

// inspectScript prunes dead waiters and reads the lease and the queue
// length in one step. Answers {'free', waiters} or {'held', waiters, token,
// owner, kind, pttl, claim, fence} (fence: the Redlock token, 0 if none).
var inspectScript = goredis.NewScript(prelude + `
local e = check_epoch()
if e then return {'epoch', e} end
if prune(now_ms()) > 0 then wake() end
tidy()
local n = redis.call('ZCARD', KEYS[4])
if redis.call('EXISTS', KEYS[2]) == 0 then return {'free', n} end
local h = redis.call('HMGET', KEYS[2], 'token', 'owner', 'ttl', 'claim', 'fence')
return {'held', n, tonumber(h[1]), h[2], tonumber(h[3]), redis.call('PTTL', KEYS[2]), h[4], tonumber(h[5] or '0')}
`)

// fenceScript (Redlock) raises the fence counter to at least ARGV[4], the
// token of a grant on a majority, records that token in the lease of claim
// ARGV[5] if it holds the name, and dequeues the claim. Answers {'ok'}.
var fenceScript = goredis.NewScript(prelude + `
local e = check_epoch()
if e then return {'epoch', e} end
local c = tonumber(redis.call('GET', KEYS[3]) or '0')
if c < tonumber(ARGV[4]) then redis.call('SET', KEYS[3], ARGV[4]) end
if redis.call('HGET', KEYS[2], 'claim') == ARGV[5] then
  redis.call('HSET', KEYS[2], 'fence', ARGV[4])
end
redis.call('ZREM', KEYS[4], ARGV[5])
redis.call('ZREM', KEYS[5], ARGV[5])
tidy()
return {'ok'}
`)

// givebackScript (Redlock) deletes the lease if claim ARGV[4] holds it (a
// vote won here but lost on the majority), keeping the claim's place in the
// queue, and wakes the head waiter. Answers {'ok'}.
var givebackScript = goredis.NewScript(prelude + `
local e = check_epoch()
if e then return {'epoch', e} end
if redis.call('HGET', KEYS[2], 'claim') == ARGV[4] then
  redis.call('DEL', KEYS[2])
  wake()
end
return {'ok'}
`)
