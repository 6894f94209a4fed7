-- leader.lua reads an election's state in one step (Leader, and every
-- read of an observer); it prunes dead waiters as inspect.lua does. An
-- observer's read also publishes the state it answers on the observer's
-- own marker channel ARGV[4]: on the observer's connection that message
-- comes after every message published before the read and before every
-- one published after it.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims  KEYS[8] held (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
-- ARGV[4] an observer's marker channel; '' (Leader): publish nothing
--
-- Returns {'ok', seat, type}: seat as the observers' messages carry it
-- (see seat in prelude.lua), type the one the name lives as ('' if free).

local e = check_epoch()
if e then return {'epoch', e} end
if prune(now_ms()) + regroup(now_ms()) > 0 then announce_if(nil, wake()) end
tidy()
local state = seat(now_ms())
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], state) end
return {'ok', state, live_type() or ''}
