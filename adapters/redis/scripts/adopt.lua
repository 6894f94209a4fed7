-- adopt.lua makes claim ARGV[5] the holder of the TTL lease of token
-- ARGV[4] if it is not revoked: the claim and node change, the token,
-- owner, TTL and age stay, the key expires a full TTL from now, and the
-- previous holder's Locker is told ("adopted <its claim>"); an
-- election's observers are told of the new holder.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] token
-- ARGV[5] the adopter's new claim ID
-- ARGV[6] the adopter's node (Config.Node)
--
-- Returns {'adopted', ttl ms, type} (type: the lease's, 'mutex' if it has
-- none), or {'group'} (a semaphore or read-write lock: not offered),
-- {'gone'} (the token does not hold the
-- name), {'session'} (a session lease) or {'revoked'}.

local e = check_epoch()
if e then return {'epoch', e} end
if group_type() then return {'group'} end -- not offered (DESIGN.md)
local h = redis.call('HMGET', KEYS[2], 'token', 'claim', 'ttl', 'revoked', 'type')
if h[1] ~= ARGV[4] then return {'gone'} end
local ttl = tonumber(h[3] or '0')
if ttl <= 0 then return {'session'} end
if h[4] then return {'revoked'} end
redis.call('HSET', KEYS[2], 'claim', ARGV[5], 'node', ARGV[6])
redis.call('PEXPIRE', KEYS[2], ttl)
tell(h[2] or '', 'adopted ' .. (h[2] or ''))
count_change(h[5]) -- a new holder: a change for an election's observers
return {'adopted', ttl, h[5] or 'mutex'}
