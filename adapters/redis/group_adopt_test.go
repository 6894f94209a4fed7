package redis_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// TestGroup_Adopt: Adopt names one lease of a group by its token, as a
// mutex's (lock/DESIGN.md, "Inspect and the operations"): an adopted TTL
// permit comes back as a permit with its token and slot, the previous
// holder's lease ends with ErrAdopted and its Release touches nothing, the
// other holders are untouched, and the adopter's Release hands the slot
// to the waiter; a read lease is adopted as a lease; a session holder, a
// revoked one and an unknown token are ErrNotHeld.
func TestGroup_Adopt(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newNodeLocker(t, srv.Addr(), "node-a", 2*time.Second, nil)
	b := newNodeLocker(t, srv.Addr(), "node-b", 2*time.Second, nil)
	ctx := testCtx(t)

	p0 := mustPermit(t, a, "s", 2, lock.WithTTL(time.Minute))
	p1 := mustPermit(t, a, "s", 2, lock.WithTTL(time.Minute), lock.WithOwner("job 1"))
	got, err := b.Adopt(ctx, "s", p0.Token())
	require.NoError(t, err)
	adopted, ok := got.(lock.Permit)
	require.True(t, ok, "an adopted permit is a lock.Permit")
	assert.Equal(t, p0.Token(), adopted.Token())
	assert.Equal(t, p0.Slot(), adopted.Slot(), "an adopted permit keeps its slot")
	waitDone(t, p0, 10*time.Second, "the previous holder's permit")
	require.ErrorIs(t, p0.Err(), lock.ErrAdopted)
	_ = p0.Release(ctx)
	assert.NoError(t, adopted.Refresh(ctx), "the previous holder's Release touched nothing")
	assert.NoError(t, p1.Err(), "another holder is untouched")

	_, err = b.Adopt(ctx, "s", p1.Token()+100)
	require.ErrorIs(t, err, lock.ErrNotHeld, "an unknown token")
	s := mustPermit(t, a, "session", 1)
	_, err = b.Adopt(ctx, "session", s.Token())
	require.ErrorIs(t, err, lock.ErrNotHeld, "a session permit")

	waiter := permitAsync(ctx, a, "s", 2)
	waitWaiters(t, b, "s", 1)
	require.NoError(t, adopted.Release(ctx))
	next := <-waiter
	require.NoError(t, next.err)
	assert.Equal(t, p0.Slot(), next.p.Slot(), "the adopter's Release hands the slot on")

	r, err := a.AcquireRead(ctx, "rw", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	r2, err := a.AcquireRead(ctx, "rw", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	require.NoError(t, b.Revoke(ctx, "rw", r2.Token()))
	_, err = b.Adopt(ctx, "rw", r2.Token())
	require.ErrorIs(t, err, lock.ErrNotHeld, "a revoked read lease is gone")
	read, err := b.Adopt(ctx, "rw", r.Token())
	require.NoError(t, err)
	_, isPermit := read.(lock.Permit)
	assert.False(t, isPermit, "a read lease is adopted as a lease")
	info, err := a.Inspect(ctx, "rw")
	require.NoError(t, err)
	assert.Equal(t, "node-b", info.Node, "the adopter holds it")
	waitDone(t, r, 10*time.Second, "the previous reader's lease")
	require.ErrorIs(t, r.Err(), lock.ErrAdopted)
	require.NoError(t, read.Release(ctx))
	for _, l := range []lock.Lease{p1, s, next.p} {
		require.NoError(t, l.Release(ctx))
	}
	raw := rawClient(t, srv.Addr())
	for _, name := range []string{"s", "session", "rw"} {
		assert.Equal(t, []string{"fence:" + name}, keysOf(t, raw, name), name)
	}
}
