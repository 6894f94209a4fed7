-- withdraw.lua removes claim ARGV[4] from the queue and deletes the lease
-- if that claim holds it (a grant that raced a cancellation), then wakes
-- the head waiter (an election's candidate is elected, every waiter of a
-- semaphore or read-write lock there is room for admitted: see wake); an
-- election's observers are told of a change.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] claim ID
--
-- Returns {'ok', released}, released 1 if the claim's lease was deleted,
-- else 0.

local e = check_epoch()
if e then return {'epoch', e} end
local claim = ARGV[4]
dequeue(claim)
local released = 0
local h = redis.call('HMGET', KEYS[2], 'claim', 'type')
if is_group(h[2]) then -- a holder of a semaphore or read-write lock
  if drop_claim(claim, now_ms()) then released = 1 end
  h = {}
elseif h[1] == claim then
  redis.call('DEL', KEYS[2])
  released = 1
end
local deleted = nil -- the type of the lease deleted here
if released == 1 then deleted = h[2] end
announce_if(deleted, wake())
tidy()
return {'ok', released}
