-- prelude.lua: the helpers every script starts with; it is prepended to
-- each of the other files. Every script but list.lua takes the same keys
-- and every script the same first three arguments:
--
-- KEYS[1] epoch: the store's epoch, a random string
-- KEYS[2] lease: the lease hash (token, owner, ttl, claim, since, node,
--                type; value and ver for an election; revoked once
--                revoked; fence in Redlock mode). Its name is also the
--                channel of an election's observers (announce).
-- KEYS[3] fence: the name's token counter
-- KEYS[4] queue: zset, claim ID -> arrival number
-- KEYS[5] beats: zset, claim ID -> heartbeat deadline (server ms)
-- KEYS[6] qseq:  the counter of arrival numbers
-- KEYS[7] claims: hash, claim ID -> "queued-at ms\nnode\nowner", and for
--                an election's candidate 'e:' .. claim ID -> "lease TTL
--                ms\nkind\nvalue"; an entry exists exactly while its
--                claim is queued; for a semaphore's or read-write lock's
--                waiter 'g:' .. claim ID -> "type\nlimit or mode\nlease
--                TTL ms\nkind" (holders.lua)
-- KEYS[8] held:  zset, token -> holder deadline (server ms): the holders
--                of a semaphore or read-write lock (holders.lua)
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

-- dequeue drops claim c from the queue, with its heartbeat and details
-- (and its candidate or group entry).
local function dequeue(c)
  redis.call('ZREM', KEYS[4], c)
  redis.call('ZREM', KEYS[5], c)
  redis.call('HDEL', KEYS[7], c, 'e:' .. c, 'g:' .. c)
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

-- details encodes a waiter's details for KEYS[7]: the node has no control
-- characters, so the first two newlines split the three fields.
local function details(queued_at, node, owner)
  return string.format('%.0f', queued_at) .. '\n' .. node .. '\n' .. owner
end

-- candidate encodes an election's candidate entry for KEYS[7] ('e:' ..
-- claim ID): what wake() needs to elect it — the lease TTL in ms (its
-- PEXPIRE), its kind (its TTL in ms, 0 for a session) and its value.
local function candidate(px, kind, value)
  return string.format('%.0f', tonumber(px)) .. '\n' .. string.format('%.0f', tonumber(kind)) .. '\n' .. value
end

-- split3 splits a string of three fields at its first two newlines (the
-- last field may hold newlines); nil if it has fewer.
local function split3(d)
  local a = string.find(d, '\n', 1, true)
  local b = a and string.find(d, '\n', a + 1, true)
  if not b then return nil end
  return string.sub(d, 1, a - 1), string.sub(d, a + 1, b - 1), string.sub(d, b + 1)
end

-- grant makes claim the holder of the name: the next token of the fence
-- counter, the lease hash and its expiry px ms; kind is the lease's TTL in
-- ms (0: session), typ 'mutex' or 'election' (whose value is stored too).
local function grant(claim, owner, px, kind, node, typ, value, now)
  local token = redis.call('INCR', KEYS[3])
  redis.call('HSET', KEYS[2], 'token', token, 'owner', owner, 'ttl', kind, 'claim', claim,
    'since', now, 'node', node, 'type', typ)
  if typ == 'election' then redis.call('HSET', KEYS[2], 'value', value) end
  redis.call('PEXPIRE', KEYS[2], px)
  return token
end

-- live_type is the type the name lives as: its lease's ('mutex' if the
-- lease has none: an older version's), else its queue head's ('election'
-- if the head has a candidate entry, a group's type if it has a group
-- entry), else false (free, nobody queued).
local function live_type()
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return redis.call('HGET', KEYS[2], 'type') or 'mutex'
  end
  local head = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
  if not head then return false end
  if redis.call('HEXISTS', KEYS[7], 'e:' .. head) == 1 then return 'election' end
  local g = redis.call('HGET', KEYS[7], 'g:' .. head)
  if g then return string.match(g, '^[^\n]*') end
  return 'mutex'
end

-- seat is the state of the name as an election's observers see it:
-- "token\nver\nclaim\nage ms\npttl ms\nvalue" while an election's term
-- holds it, else the empty seat "0\n<fence counter>".
local function seat(now)
  local h = redis.call('HMGET', KEYS[2], 'type', 'token', 'ver', 'claim', 'since', 'value')
  if h[1] ~= 'election' then
    return '0\n' .. (redis.call('GET', KEYS[3]) or '0')
  end
  local age = 0
  if tonumber(h[5]) then age = math.max(0, now - tonumber(h[5])) end
  return h[2] .. '\n' .. (h[3] or '0') .. '\n' .. h[4] .. '\n' .. string.format('%.0f', age) .. '\n' ..
    string.format('%.0f', redis.call('PTTL', KEYS[2])) .. '\n' .. (h[6] or '')
end

-- announce tells the election's observers its state: on the channel
-- named as the lease key.
local function announce()
  redis.call('PUBLISH', KEYS[2], seat(now_ms()))
end

-- announce_if tells the election's observers its state if this step
-- changed it: it granted, deleted or changed a lease of type typ
-- ('election'), or wake() elected a candidate (elected).
local function announce_if(typ, elected)
  if elected or typ == 'election' then announce() end
end

-- count_change counts a change of a live term (ver) and tells the
-- observers, if the lease is an election's (typ).
local function count_change(typ)
  if typ ~= 'election' then return end
  redis.call('HINCRBY', KEYS[2], 'ver', 1)
  announce()
end

