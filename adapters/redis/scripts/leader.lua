-- leader.lua reads an election's state in one step (Leader, and every
-- read of an observer); it prunes dead waiters as inspect.lua does.
--
-- KEYS[1] epoch  KEYS[2] lease  KEYS[3] fence  KEYS[4] queue  KEYS[5] beats
-- KEYS[6] qseq   KEYS[7] claims   (every script's keys: see prelude.lua)
-- ARGV[1] caller's epoch  ARGV[2] fresh epoch  ARGV[3] wake-up channel prefix
--                (every script's first arguments: see prelude.lua)
--
-- Returns {'ok', seat, type}: seat as the observers' messages carry it
-- (see seat in prelude.lua), type the one the name lives as ('' if free).

local e = check_epoch()
if e then return {'epoch', e} end
if prune(now_ms()) > 0 and wake() then announce() end
tidy()
return {'ok', seat(now_ms()), live_type() or ''}
