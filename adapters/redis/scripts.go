package redis

import (
	_ "embed" // the Lua scripts
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/lock"
)

// Every state change is one Lua script, in scripts/*.lua: each file starts
// with a header naming its KEYS and ARGV by position and its answers.
// Every script is prelude.lua (the shared helpers: epoch check, server
// time, pruning, wake-ups) followed by its own file; all but list.lua take
// the same keys (instance.keys), and all the same first three arguments
// (instance.runKeys).

// The shared helpers: prelude.lua, then holders.lua (a semaphore's or
// read-write lock's holders), then handoff.lua (wake, admit).
var (
	//go:embed scripts/prelude.lua
	baseLua string
	//go:embed scripts/holders.lua
	holdersLua string
	//go:embed scripts/handoff.lua
	handoffLua string

	preludeLua = baseLua + holdersLua + handoffLua
)

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
	//go:embed scripts/proclaim.lua
	proclaimLua string
	//go:embed scripts/leader.lua
	leaderLua string
	//go:embed scripts/group.lua
	groupLua string
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
	// proclaimScript sets the value of an election's term by token and
	// claim and tells the observers.
	proclaimScript = goredis.NewScript(preludeLua + proclaimLua)
	// leaderScript reads an election's state (Leader, Observe).
	leaderScript = goredis.NewScript(preludeLua + leaderLua)
	// groupScript grants a permit or a read or write lease, or queues the
	// claim (see mode: wait or try).
	groupScript = goredis.NewScript(preludeLua + groupLua)
)

// ballot is what a claim asks to hold (lock/DESIGN.md, "One namespace,
// one type per live name"): acquireScript's and groupScript's ARGV[11]
// and ARGV[12].
type ballot struct {
	typ   string // one of the types below
	value string // an election's value; a semaphore's limit; "read" or "write"
}

// The types a name lives as, as the scripts store them (and as the errors
// name them).
const (
	typeMutex     = "mutex"
	typeElection  = "election"
	typeSemaphore = "semaphore"
	typeRW        = "read-write lock"
)

// group reports whether b asks for a semaphore's permit or a read-write
// lock's lease (groupScript), not a mutex or a term (acquireScript).
func (b ballot) group() bool {
	return b.typ == typeSemaphore || b.typ == typeRW
}

// asMutex is the ballot of Acquire and TryAcquire.
var asMutex = ballot{typ: typeMutex}

// typeErr is the error of a call asking for type asked on a name that
// lives as type live.
func typeErr(live, asked string) error {
	return fmt.Errorf("%w: the name lives as %s, asked as %s", lock.ErrInvalidOption, article(live), article(asked))
}

// limitErr is the error of a permit asked with limit asked of a semaphore
// whose limit in force is live.
func limitErr(live, asked string) error {
	return fmt.Errorf("%w: the name is a semaphore of limit %s, asked with limit %s", lock.ErrInvalidOption, live, asked)
}

// article is a type with its indefinite article: "a mutex", "an election".
func article(typ string) string {
	if strings.HasPrefix(typ, "e") {
		return "an " + typ
	}
	return "a " + typ
}

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
