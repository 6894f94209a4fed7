-- giveback.lua (Redlock) deletes the lease if claim ARGV[4] holds it (a
-- vote won here but lost on the majority), keeping the claim's place in
-- the queue, and wakes the head waiter.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] claim ID
--
-- Returns {'ok'}.

local e = check_epoch()
if e then return {'epoch', e} end
if redis.call('HGET', KEYS[2], 'claim') == ARGV[4] then
  redis.call('DEL', KEYS[2])
  wake()
end
return {'ok'}
