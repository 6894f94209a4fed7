-- list.lua reads the leases of one page of names in one step (List). It
-- writes nothing but the epoch key, and takes its own keys.
--
-- KEYS[1] epoch
-- KEYS[2i] lease of the i-th name, KEYS[2i+1] its beats (see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
--
-- Returns {'ok', entry per name}: an entry is {} if the name is not held,
-- else {token, owner, kind, pttl, claim, age, node, waiters}: kind is the
-- lease's TTL in ms (0: session), age the time since the grant in ms,
-- waiters the claims whose heartbeat deadline has not passed (what
-- inspect.lua counts after pruning).

local e = check_epoch()
if e then return {'epoch', e} end
local now = now_ms()
local out = {'ok'}
for i = 2, #KEYS, 2 do
  local entry = {}
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local h = redis.call('HMGET', KEYS[i], 'token', 'owner', 'ttl', 'claim', 'since', 'node')
    local age = 0
    if tonumber(h[5]) then age = math.max(0, now - tonumber(h[5])) end
    entry = {tonumber(h[1]), h[2], tonumber(h[3]), redis.call('PTTL', KEYS[i]), h[4], age, h[6] or '',
      redis.call('ZCOUNT', KEYS[i + 1], '(' .. string.format('%.0f', now), '+inf')}
  end
  out[#out + 1] = entry
end
return out
