-- inspect.lua prunes dead waiters and reads the lease, the queue length
-- and the first waiters in one step.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] how many waiters to report (0 to 1000)
--
-- Returns {'free', waiters, queue} or {'held', waiters, queue, token,
-- owner, kind, pttl, claim, fence, age, node}: kind is the lease's TTL in
-- ms, 0 for a session lease; fence is the Redlock token, 0 if none; age is
-- the time since the grant in ms (0 if the lease does not say). queue is
-- the first ARGV[4] waiters in order, each {claim, waited ms (-1 if
-- unknown), node, owner}.

local e = check_epoch()
if e then return {'epoch', e} end
local now = now_ms()
if prune(now) + regroup(now) > 0 then announce_if(nil, wake()) end
tidy()
local n = redis.call('ZCARD', KEYS[4])
local queue = {}
local limit = tonumber(ARGV[4])
if limit > 0 then
  for _, c in ipairs(redis.call('ZRANGE', KEYS[4], 0, limit - 1)) do
    local d = redis.call('HGET', KEYS[7], c)
    local w = {c, -1, '', ''}
    local q, node, owner = split3(d or '')
    if tonumber(q) then w = {c, math.max(0, now - tonumber(q)), node, owner} end
    queue[#queue + 1] = w
  end
end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'free', n, queue} end
local h = redis.call('HMGET', KEYS[2], 'token', 'owner', 'ttl', 'claim', 'fence', 'since', 'node')
local age = 0
if tonumber(h[6]) then age = math.max(0, now - tonumber(h[6])) end
local pttl = redis.call('PTTL', KEYS[2])
if group_type() then pttl = math.max(0, (deadline(h[1]) or now) - now) end -- the newest holder's
return {'held', n, queue, tonumber(h[1]), h[2], tonumber(h[3]), pttl, h[4],
  tonumber(h[5] or '0'), age, h[7] or ''}
