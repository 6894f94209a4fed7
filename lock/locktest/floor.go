package locktest

import (
	"errors"
	"strconv"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// testFloorToken (lock/DESIGN.md, "Raising tokens"): for a Locker that
// implements lock.TokenFloorer, a floor above the name's last token makes
// every later grant, by any Locker, exceed it; a floor below the current
// token leaves the holder alone and the tokens increasing; a floor above
// lock.MaxTokenFloor is ErrInvalidOption. A store that cannot raise its
// tokens that far answers ErrUnsupported naming the floor, and is then
// asked for a floor just above the last token; the subtest is skipped if
// the Locker does not implement lock.TokenFloorer or refuses that too.
func testFloorToken(e *env) {
	f, ok := e.a.(lock.TokenFloorer)
	if !ok {
		e.t.Skipf("%T does not implement lock.TokenFloorer", e.a)
	}
	name := e.name("floor")
	err := f.FloorToken(e.ctx(), name, lock.MaxTokenFloor+1)
	require.ErrorIs(e.t, err, lock.ErrInvalidOption, "FloorToken above lock.MaxTokenFloor")

	first := e.acquire(e.a, name)
	last := first.Token()
	e.release(first)
	floor := last + 1000
	err = f.FloorToken(e.ctx(), name, floor)
	if errors.Is(err, lock.ErrUnsupported) {
		assert.Contains(e.t, err.Error(), strconv.FormatUint(floor, 10), "ErrUnsupported names the floor")
		floor = last + 1
		err = e.skipUnsupported(f.FloorToken(e.ctx(), name, floor), "FloorToken just above the last token")
	}
	require.NoError(e.t, err, "FloorToken(%q, %d)", name, floor)

	next := e.acquire(e.b, name)
	assert.Greater(e.t, next.Token(), floor, "the first grant after FloorToken, by another Locker")
	e.release(next)
	held := e.acquire(e.a, name)
	assert.Greater(e.t, held.Token(), next.Token(), "the second grant after FloorToken")

	require.NoError(e.t, f.FloorToken(e.ctx(), name, held.Token()-1), "a floor below the current token")
	e.requireHeldBy(e.b, held, "FloorToken leaves the holder alone")
	e.release(held)
	after := e.acquire(e.b, name)
	assert.Greater(e.t, after.Token(), held.Token(), "a floor below does not lower the tokens")
	e.release(after)
}
