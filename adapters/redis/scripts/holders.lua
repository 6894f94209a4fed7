-- holders.lua: the holders of a semaphore or read-write lock (a group),
-- prepended after prelude.lua. While any holder lives the lease hash
-- KEYS[2] exists with 'type' ('semaphore' or 'read-write lock'), 'limit'
-- (semaphore) or 'mode' ('read' or 'write'), and per holder:
--   'h:' .. token -> "slot\nkind\nsince\nclaim\nnode\nowner" (slot ''
--                    for a read-write lock; the owner is the rest)
--   'c:' .. claim -> token;  's:' .. slot -> token;  'r:' .. token -> '1'
--                    once revoked
-- and the mutex's fields (token, owner, ttl, claim, since, node) mirror
-- the holder with the greatest token (settle), so that inspect.lua and
-- list.lua read a group as held by its newest holder. KEYS[8] holds the
-- deadlines, token -> server ms; both keys expire with the latest one.

-- num formats an integral number without exponent.
local function num(x)
  return string.format('%.0f', tonumber(x))
end

local function is_group(typ)
  return typ == 'semaphore' or typ == 'read-write lock'
end

-- group_type is the lease's type if the lease is a group's, else false.
local function group_type()
  local typ = redis.call('HGET', KEYS[2], 'type')
  if is_group(typ) then return typ end
  return false
end

-- split splits d at its first n-1 newlines into n fields (the last may
-- hold newlines); nil if it has fewer.
local function split(d, n)
  local out, from = {}, 1
  for _ = 1, n - 1 do
    local at = string.find(d, '\n', from, true)
    if not at then return nil end
    out[#out + 1] = string.sub(d, from, at - 1)
    from = at + 1
  end
  out[#out + 1] = string.sub(d, from)
  return out
end

-- member is holder token's entry {slot, kind, since, claim, node, owner},
-- or nil.
local function member(token)
  local d = redis.call('HGET', KEYS[2], 'h:' .. token)
  if not d then return nil end
  return split(d, 6)
end

-- deadline is holder token's deadline (server ms), or nil.
local function deadline(token)
  return tonumber(redis.call('ZSCORE', KEYS[8], token) or '')
end

-- drop removes holder token (its deadline and entries); settle follows.
local function drop(token)
  local m = member(token)
  redis.call('ZREM', KEYS[8], token)
  if not m then return end
  redis.call('HDEL', KEYS[2], 'h:' .. token, 'c:' .. m[4], 'r:' .. token)
  if m[1] ~= '' then redis.call('HDEL', KEYS[2], 's:' .. m[1]) end
end

-- outlive makes both keys live at least until deadline at (server ms):
-- a holder's deadline that only grows (a grant, a renewal) needs no walk
-- of the held set.
local function outlive(at, now)
  local px = at - now
  if px > redis.call('PTTL', KEYS[2]) then
    redis.call('PEXPIRE', KEYS[2], num(px))
    redis.call('PEXPIRE', KEYS[8], num(px))
  end
end

-- settle makes the keys agree with the held set: both deleted if nobody
-- holds, else the newest holder mirrored and both expiring with the
-- latest deadline.
local function settle(now)
  local held = redis.call('ZRANGE', KEYS[8], 0, -1, 'WITHSCORES')
  if #held == 0 then
    redis.call('DEL', KEYS[2], KEYS[8])
    return
  end
  local top, last = 0, 0
  for i = 1, #held, 2 do
    top = math.max(top, tonumber(held[i]))
    last = math.max(last, tonumber(held[i + 1]))
  end
  top = num(top)
  if redis.call('HGET', KEYS[2], 'token') ~= top then
    local m = member(top)
    redis.call('HSET', KEYS[2], 'token', top, 'owner', m[6], 'ttl', m[2], 'claim', m[4], 'since', m[3],
      'node', m[5])
  end
  local px = math.max(1, last - now)
  redis.call('PEXPIRE', KEYS[2], num(px))
  redis.call('PEXPIRE', KEYS[8], num(px))
end

-- regroup drops the holders whose deadline has passed and settles, if the
-- lease is a group's; it returns how many it dropped.
local function regroup(now)
  if not group_type() then return 0 end
  local dead = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now)
  for _, t in ipairs(dead) do drop(t) end
  if #dead > 0 then settle(now) end
  return #dead
end

-- room reports whether a claim of type typ asking arg (a semaphore's
-- limit, 'read' or 'write') may hold the name now, held as it is.
local function room(typ, arg)
  if redis.call('EXISTS', KEYS[2]) == 0 then return true end
  local h = redis.call('HMGET', KEYS[2], 'type', 'limit', 'mode')
  if h[1] ~= typ then return false end
  if typ == 'semaphore' then
    return redis.call('ZCARD', KEYS[8]) < tonumber(h[2])
  end
  return arg == 'read' and h[3] == 'read'
end

-- free_slot is the smallest slot in [0, limit) no permit holds.
local function free_slot(limit)
  local fields = {}
  for i = 0, limit - 1 do fields[#fields + 1] = 's:' .. i end
  local used = redis.call('HMGET', KEYS[2], unpack(fields))
  for i = 1, limit do
    if not used[i] then return tostring(i - 1) end
  end
  return nil
end

-- join makes claim a holder (room checked): a token of the name's
-- counter, a slot for a permit, its entries, its deadline now + px; it
-- returns the token. kind is the lease's TTL in ms (0: session).
local function join(claim, owner, px, kind, node, typ, arg, now)
  local token = num(redis.call('INCR', KEYS[3]))
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[8])
    if typ == 'semaphore' then
      redis.call('HSET', KEYS[2], 'type', typ, 'limit', arg)
    else
      redis.call('HSET', KEYS[2], 'type', typ, 'mode', arg)
    end
  end
  local slot = ''
  if typ == 'semaphore' then
    slot = free_slot(tonumber(redis.call('HGET', KEYS[2], 'limit')))
    redis.call('HSET', KEYS[2], 's:' .. slot, token)
  end
  redis.call('HSET', KEYS[2], 'h:' .. token,
    slot .. '\n' .. num(kind) .. '\n' .. num(now) .. '\n' .. claim .. '\n' .. node .. '\n' .. owner,
    'c:' .. claim, token,
    -- the newest holder, mirrored (settle)
    'token', token, 'owner', owner, 'ttl', num(kind), 'claim', claim, 'since', num(now), 'node', node)
  redis.call('ZADD', KEYS[8], num(now + tonumber(px)), token)
  outlive(now + tonumber(px), now)
  return token
end

-- granted is the answer for claim's grant of token: {'granted', token,
-- time left ms, slot (-1: none)}.
local function granted(token, now)
  local m = member(token)
  local slot = -1
  if m and m[1] ~= '' then slot = tonumber(m[1]) end
  return {'granted', tonumber(token), math.max(0, (deadline(token) or now) - now), slot}
end

-- group_entry encodes a group waiter's entry for KEYS[7] ('g:' .. claim).
local function group_entry(typ, arg, px, kind)
  return typ .. '\n' .. arg .. '\n' .. num(px) .. '\n' .. num(kind)
end

-- drop_claim drops claim's grant if it holds one; true if it did.
local function drop_claim(claim, now)
  local t = redis.call('HGET', KEYS[2], 'c:' .. claim)
  if not t then return false end
  drop(t)
  settle(now)
  return true
end
