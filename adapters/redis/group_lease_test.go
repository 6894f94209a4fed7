package redis_test

import (
	"fmt"
	"strconv"
	"strings"
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
	// In the store, not by the local deadline (a retry of the waiter's in
	// flight at the release may be the call that finds the grant): its
	// deadline in the held set is at least its TTL after the grant.
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
	require.NoError(t, reader.Release(ctx))
	w := <-got
	require.NoError(t, w.err)
	raw := rawClient(t, srv.Addr())
	token := fmt.Sprint(w.lease.Token())
	entry, err := raw.HGet(ctx, redis.DefaultPrefix+"lease:h", "h:"+token).Result()
	require.NoError(t, err)
	fields := strings.SplitN(entry, "\n", 6) // slot, kind, since, ...
	require.Len(t, fields, 6)
	since, err := strconv.ParseInt(fields[2], 10, 64)
	require.NoError(t, err)
	deadline, err := raw.ZScore(ctx, redis.DefaultPrefix+"held:h", token).Result()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, int64(deadline)-since, ttl.Milliseconds(),
		"a grant by hand-off: its TTL after the grant, not the waiter's heartbeat")
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
	require.NoError(t, first.Release(ctx))
	second := <-got
	require.NoError(t, second.err)
	// In the store (a retry of the candidate's in flight at the resignation
	// may be the call that finds the term): the term expires at least its
	// TTL after its grant.
	raw := rawClient(t, srv.Addr())
	key := redis.DefaultPrefix + "lease:e"
	since, err := raw.HGet(ctx, key, "since").Int64()
	require.NoError(t, err)
	expiry, err := raw.Do(ctx, "PEXPIRETIME", key).Int64()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, expiry-since, ttl.Milliseconds(),
		"a term by hand-off: its TTL after the grant, not the candidate's heartbeat")
	require.NoError(t, second.term.Release(ctx))
}
