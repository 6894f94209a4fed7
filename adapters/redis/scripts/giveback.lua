-- giveback.lua deletes the lease if claim ARGV[4] holds it (a Redlock vote
-- won here but lost on the majority; a grant answered too late), keeping
-- the claim's place in the queue, and wakes the head waiter. With ARGV[5]
-- > 0, a claim that is no longer queued (its grant dequeued it) is put
-- back at the head, where it was when it was granted, with a heartbeat and
-- its details (the lease's owner and node; queued from now), and an
-- election's candidate with its entry for wake() (ARGV[5] is its Locker's
-- SessionTTL, a session lease's TTL).
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] claim ID
-- ARGV[5] heartbeat TTL in ms to requeue the claim at the head; 0: don't
--
-- A holder of a semaphore or read-write lock is dropped from the held set
-- (holders.lua); Go never asks to requeue one (a late grant of a group's
-- waiter is withdrawn: the waiter queues again at the back).
--
-- Returns {'ok'}.

local e = check_epoch()
if e then return {'epoch', e} end
local claim = ARGV[4]
local h = redis.call('HMGET', KEYS[2], 'claim', 'owner', 'node', 'type', 'ttl', 'value')
if is_group(h[4]) then -- a holder of a semaphore or read-write lock
  drop_claim(claim, now_ms())
  h = {}
elseif h[1] == claim then
  redis.call('DEL', KEYS[2])
end
local hb = tonumber(ARGV[5] or '0')
if hb > 0 and not redis.call('ZSCORE', KEYS[4], claim) then
  local now = now_ms()
  local head = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  local score = (head[2] and tonumber(head[2]) - 1) or redis.call('INCR', KEYS[6])
  redis.call('ZADD', KEYS[4], score, claim)
  redis.call('ZADD', KEYS[5], now + hb, claim)
  if h[1] == claim then
    redis.call('HSET', KEYS[7], claim, details(now, h[3] or '', h[2] or ''))
  end
  if h[1] == claim and h[4] == 'election' then -- a candidate again: its entry for wake()
    local kind = tonumber(h[5] or '0')
    local px = hb -- a session lease's TTL is the SessionTTL of the claim's Locker, as hb
    if kind > 0 then px = kind end
    redis.call('HSET', KEYS[7], 'e:' .. claim, candidate(px, kind, h[6] or ''))
  end
end
local deleted = nil -- the type of the lease deleted here
if h[1] == claim then deleted = h[4] end
local elected = wake() -- it prunes first: it never elects a dead head
tidy() -- the queue keys go once nobody waits (the prune may have emptied it)
announce_if(deleted, elected)
return {'ok'}
