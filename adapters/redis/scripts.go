package redis

import (
	_ "embed" // the Lua scripts

	goredis "github.com/redis/go-redis/v9"
)

// Every state change is one Lua script, in scripts/*.lua: each file starts
// with a header naming its KEYS and ARGV by position and its answers.
// Every script is prelude.lua (the shared helpers: epoch check, server
// time, pruning, wake-ups) followed by its own file; all but list.lua take
// the same keys (instance.keys), and all the same first three arguments
// (instance.runKeys).

//go:embed scripts/prelude.lua
var preludeLua string

var (
	//go:embed scripts/acquire.lua
	acquireLua string
	//go:embed scripts/renew.lua
	renewLua string
	//go:embed scripts/release.lua
	releaseLua string
	//go:embed scripts/withdraw.lua
	withdrawLua string
	//go:embed scripts/inspect.lua
	inspectLua string
	//go:embed scripts/fence.lua
	fenceLua string
	//go:embed scripts/giveback.lua
	givebackLua string
	//go:embed scripts/revoke.lua
	revokeLua string
	//go:embed scripts/adopt.lua
	adoptLua string
	//go:embed scripts/list.lua
	listLua string
	//go:embed scripts/floor.lua
	floorLua string
)

var (
	// acquireScript grants the name to a claim or queues it (see mode).
	acquireScript = goredis.NewScript(preludeLua + acquireLua)
	// renewScript extends a lease by token and claim (session renewal,
	// Refresh), or only checks it (a TTL lease at the renewer's tick); it
	// refuses a revoked or adopted lease.
	renewScript = goredis.NewScript(preludeLua + renewLua)
	// releaseScript deletes a lease by token and claim and wakes the head
	// waiter.
	releaseScript = goredis.NewScript(preludeLua + releaseLua)
	// withdrawScript drops a claim from the queue, and its lease if a grant
	// raced the withdrawal.
	withdrawScript = goredis.NewScript(preludeLua + withdrawLua)
	// inspectScript reads lease, queue length and first waiters in one step.
	inspectScript = goredis.NewScript(preludeLua + inspectLua)
	// listScript reads the leases of one page of names in one step.
	listScript = goredis.NewScript(preludeLua + listLua)
	// revokeScript marks a lease revoked and tells its holder, or checks
	// whether the revoked lease is still there.
	revokeScript = goredis.NewScript(preludeLua + revokeLua)
	// adoptScript makes a claim the holder of a TTL lease by its token.
	adoptScript = goredis.NewScript(preludeLua + adoptLua)
	// fenceScript (Redlock) raises the fence counter to a majority's token
	// and dequeues the winner.
	fenceScript = goredis.NewScript(preludeLua + fenceLua)
	// floorScript raises the fence counter to a floor (FloorToken).
	floorScript = goredis.NewScript(preludeLua + floorLua)
	// givebackScript (Redlock) gives back a vote won on a minority.
	givebackScript = goredis.NewScript(preludeLua + givebackLua)
)

// mode is how acquireScript treats the queue; the script receives it as
// ARGV[8], as the string it is.
type mode string

const (
	// modeWait (Acquire) queues the claim and grants only to the head of
	// the queue.
	modeWait mode = "wait"
	// modeTry (TryAcquire) does not queue and respects the queue.
	modeTry mode = "try"
	// modeAny (Redlock Acquire) queues the claim, so that it is counted,
	// but grants to whoever asks first, and leaves the claim queued until
	// the Redlock grant is settled (fenceScript) or given back
	// (givebackScript), so that a vote lost on other primaries costs no
	// place.
	modeAny mode = "any"
	// modeTryAny (Redlock TryAcquire) neither queues nor respects the
	// queue.
	modeTryAny mode = "tryany"
)

// Modes of revokeScript (ARGV[6]).
const (
	revokeMark  = "revoke" // mark the lease revoked and tell its holder
	revokeCheck = "check"  // only report whether the revoked lease is there
)
