-- inspect.lua prunes dead waiters and reads the lease, the queue length
-- and the first waiters in one step.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] how many waiters to report (0 to 1000)
--
-- Returns {'free', waiters, queue, type, limit} or {'held', waiters,
-- queue, token, owner, kind, pttl, claim, fence, age, node, type, limit,
-- holders}: kind is the lease's TTL in ms, 0 for a session lease; fence
-- is the Redlock token, 0 if none; age is the time since the grant in ms
-- (0 if the lease does not say). queue is the first ARGV[4] waiters in
-- order, each {claim, waited ms (-1 if unknown), node, owner, mode} (mode
-- 'read' or 'write' for a read-write lock's waiter, else ''). type is the
-- one the name lives as ('' if free and nobody waits), limit a
-- semaphore's (0 for any other type). holders is every holder of a
-- semaphore or read-write lock, or an election's term, each {token,
-- owner, kind, time left ms, claim, age, node, slot (-1: none), mode,
-- value}; none for a mutex. The other fields are the lease hash's (for a
-- group, its newest holder: holders.lua).

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
    local g = split(redis.call('HGET', KEYS[7], 'g:' .. c) or '', 4)
    local mode = ''
    if g and g[1] == 'read-write lock' then mode = g[2] end
    local w = {c, -1, '', '', mode}
    local q, node, owner = split3(d or '')
    if tonumber(q) then w = {c, math.max(0, now - tonumber(q)), node, owner, mode} end
    queue[#queue + 1] = w
  end
end
local typ = live_type() or ''
local cap = 0 -- a semaphore's limit: the lease's, else the head's
if typ == 'semaphore' then
  local l = redis.call('HGET', KEYS[2], 'limit')
  if not l then
    local head = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
    local g = split(redis.call('HGET', KEYS[7], 'g:' .. (head or '')) or '', 4)
    if g then l = g[2] end
  end
  cap = tonumber(l or '0') or 0
end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'free', n, queue, typ, cap} end
local h = redis.call('HMGET', KEYS[2], 'token', 'owner', 'ttl', 'claim', 'fence', 'since', 'node')
local age = 0
if tonumber(h[6]) then age = math.max(0, now - tonumber(h[6])) end
local pttl = redis.call('PTTL', KEYS[2])
if group_type() then pttl = math.max(0, (deadline(h[1]) or now) - now) end -- the newest holder's
local holders = {}
if group_type() then
  local mode = redis.call('HGET', KEYS[2], 'mode') or ''
  local held = redis.call('ZRANGE', KEYS[8], 0, -1, 'WITHSCORES')
  for i = 1, #held, 2 do
    local m = member(held[i])
    if m then
      local slot = -1
      if m[1] ~= '' then slot = tonumber(m[1]) end
      holders[#holders + 1] = {tonumber(held[i]), m[6], tonumber(m[2]), math.max(0, tonumber(held[i + 1]) - now),
        m[4], math.max(0, now - (tonumber(m[3]) or now)), m[5], slot, mode, ''}
    end
  end
elseif typ == 'election' then
  holders[1] = {tonumber(h[1]), h[2], tonumber(h[3]), pttl, h[4], age, h[7] or '', -1, '',
    redis.call('HGET', KEYS[2], 'value') or ''}
end
return {'held', n, queue, tonumber(h[1]), h[2], tonumber(h[3]), pttl, h[4],
  tonumber(h[5] or '0'), age, h[7] or '', typ, cap, holders}
