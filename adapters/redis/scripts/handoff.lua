-- handoff.lua: the hand-off, prepended after holders.lua.

-- heartbeat_px is px (a lease TTL in ms) cut to the heartbeat time left
-- of waiter claim, at least 1 ms: a waiter that died while queued holds
-- what the hand-off grants it no longer than it would have stayed
-- queued; a live one gets its whole TTL back when its next call finds
-- the grant (group.lua's claimed; acquire.lua for an election's term).
local function heartbeat_px(claim, px, now)
  local beat = tonumber(redis.call('ZSCORE', KEYS[5], claim) or '')
  px = tonumber(px)
  if beat then px = math.max(1, math.min(px, beat - now)) end
  return px
end

-- admit grants the head of the queue while it is a group's waiter with
-- room (room), dequeues it and tells it: one release of a writer admits
-- every reader up to the next writer, one of a permit as many heads as
-- there are free permits, and a withdrawn waiter lets in everyone it held
-- back.
local function admit(now)
  while true do
    local head = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
    if not head then return end
    local g = split(redis.call('HGET', KEYS[7], 'g:' .. head) or '', 4)
    if not g or not room(g[1], g[2]) then return end
    local _, node, owner = split3(redis.call('HGET', KEYS[7], head) or '')
    join(head, owner or '', heartbeat_px(head, g[3], now), g[4], node or '', g[1], g[2], now)
    dequeue(head)
    tell(head, head)
  end
end

-- wake prunes dead waiters and a group's expired holders, then tells the
-- head waiter that the name is free. If the head is an election's
-- candidate it is elected in this step (the hand-off: no empty seat while
-- a candidate waits) and told so; wake then reports true, and the caller
-- announces the new term; its term's expiry is cut to the head's
-- heartbeat (heartbeat_px). If the head is a group's waiter, admit grants
-- every waiter it can, also while the name is held (room for more).
local function wake()
  local now = now_ms()
  prune(now)
  regroup(now)
  local head = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
  if not head then return false end
  if redis.call('HEXISTS', KEYS[7], 'g:' .. head) == 1 then
    admit(now)
    return false
  end
  if redis.call('EXISTS', KEYS[2]) == 1 then return false end
  local cand = redis.call('HGET', KEYS[7], 'e:' .. head)
  local px, kind, value = nil, nil, nil
  if cand then px, kind, value = split3(cand) end
  if px then
    px = heartbeat_px(head, px, now)
    local _, node, owner = split3(redis.call('HGET', KEYS[7], head) or '')
    grant(head, owner or '', string.format('%.0f', px), kind, node or '', 'election', value, now)
    dequeue(head)
  end
  tell(head, head)
  return px ~= nil
end
