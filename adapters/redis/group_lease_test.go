package redis_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// TestGroup_TTLLeaseRunsItsTTL: a TTL permit, read or write lease granted
// by the waiting calls (AcquirePermit, AcquireRead, AcquireWrite) runs its
// whole TTL, as the Try variants' and a mutex's do — not the Locker's
// SessionTTL, which the hand-off cuts a grant to for a waiter that may be
// dead (the caller is alive: it is the one calling). A TTL between one and
// two SessionTTLs is the case a renewal at the grant does not cover.
func TestGroup_TTLLeaseRunsItsTTL(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	const session, ttl = 2 * time.Second, 3 * time.Second
	l := newLocker(t, srv.Addr(), session)
	ctx := testCtx(t)
	margin := ttl/50 + 2*time.Millisecond
	for _, c := range []struct {
		what    string
		acquire func() (lock.Lease, error)
	}{
		{"permit", func() (lock.Lease, error) { return l.AcquirePermit(ctx, "s", 2, lock.WithTTL(ttl)) }},
		{"read", func() (lock.Lease, error) { return l.AcquireRead(ctx, "r", lock.WithTTL(ttl)) }},
		{"write", func() (lock.Lease, error) { return l.AcquireWrite(ctx, "w", lock.WithTTL(ttl)) }},
	} {
		before := time.Now()
		lease, err := c.acquire()
		require.NoError(t, err, c.what)
		assert.False(t, redis.LocalDeadline(lease).Before(before.Add(ttl-margin)),
			"%s: the local deadline is its TTL after the call, not the SessionTTL", c.what)
		require.NoError(t, lease.Release(ctx), c.what)
	}

	// The same for a grant by hand-off: a writer waiting behind a reader.
	reader, err := l.AcquireRead(ctx, "h")
	require.NoError(t, err)
	type result struct {
		lease lock.Lease
		err   error
	}
	got := make(chan result, 1)
	go func() {
		w, err := l.AcquireWrite(ctx, "h", lock.WithTTL(ttl))
		got <- result{w, err}
	}()
	waitWaiters(t, l, "h", 1)
	released := time.Now()
	require.NoError(t, reader.Release(ctx))
	w := <-got
	require.NoError(t, w.err)
	assert.False(t, redis.LocalDeadline(w.lease).Before(released.Add(ttl-margin)),
		"a grant by hand-off: its TTL after the hand-off")
	require.NoError(t, w.lease.Release(ctx))
}

// TestElection_TTLTermByHandOffRunsItsTTL: a TTL term granted by the
// hand-off (the previous term resigned) runs its whole TTL, not the
// candidate's heartbeat time left that the hand-off cut it to: the
// candidate's own call, which finds the term, shows it alive. A TTL
// between one and two SessionTTLs is the case the renewal at the grant
// (less than half the TTL left) does not cover.
func TestElection_TTLTermByHandOffRunsItsTTL(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	const session, ttl = 2 * time.Second, 3 * time.Second
	l := newLocker(t, srv.Addr(), session)
	ctx := testCtx(t)
	margin := ttl/50 + 2*time.Millisecond
	first, err := l.Campaign(ctx, "e", "first")
	require.NoError(t, err)
	type result struct {
		term lock.Term
		err  error
	}
	got := make(chan result, 1)
	go func() {
		term, err := l.Campaign(ctx, "e", "second", lock.WithTTL(ttl))
		got <- result{term, err}
	}()
	waitWaiters(t, l, "e", 1)
	resigned := time.Now()
	require.NoError(t, first.Release(ctx))
	second := <-got
	require.NoError(t, second.err)
	assert.False(t, redis.LocalDeadline(second.term).Before(resigned.Add(ttl-margin)),
		"a term by hand-off: its TTL after the hand-off")
	require.NoError(t, second.term.Release(ctx))
}
