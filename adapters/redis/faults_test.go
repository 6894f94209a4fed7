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

// TestKillRestart_AppendFsyncAlways: a crash while a lease is held is
// signalled on Done once renewals have failed for the session TTL; after the
// restart the counter continues (tokens keep increasing), and the epoch key
// survived, so a quick restart ends nothing.
func TestKillRestart_AppendFsyncAlways(t *testing.T) {
	const ttl = time.Second
	srv := testserver.StartRedis(t, testserver.RedisOptions{AppendFsyncAlways: true})
	l := newLocker(t, srv.Addr(), ttl)
	name := "kill-aof"
	before := acquireN(t, l, name, 5)
	lease, err := l.Acquire(testCtx(t), name, lock.WithOwner("holder"))
	require.NoError(t, err)
	require.Greater(t, lease.Token(), before)

	killed := time.Now()
	srv.Kill()
	doneAt := waitDone(t, lease, 10*ttl, "after the server was killed")
	t.Logf("loss detection latency (kill, AOF, SessionTTL %v): %v", ttl, doneAt.Sub(killed))
	assert.ErrorIs(t, lease.Err(), lock.ErrLost)
	assert.NotErrorIs(t, lease.Err(), redis.ErrStoreReset, "the server is down, not reset")
	srv.Restart()

	other := newLocker(t, srv.Addr(), ttl)
	next, err := other.Acquire(testCtx(t), name) // waits out the persisted lease's TTL
	require.NoError(t, err)
	assert.Greater(t, next.Token(), lease.Token(), "with appendfsync always tokens keep increasing across a crash (I2)")
	require.NoError(t, next.Release(testCtx(t)))

	// A restart shorter than the session TTL: the lease survives in the AOF
	// and the epoch key too, so renewals resume and nothing ends.
	l2 := newLocker(t, srv.Addr(), 3*time.Second)
	kept, err := l2.Acquire(testCtx(t), name)
	require.NoError(t, err)
	srv.Kill()
	srv.Restart()
	require.NoError(t, kept.Refresh(testCtx(t)), "Refresh after a quick restart with AOF")
	assert.NoError(t, kept.Err(), "a lease that survived a quick restart with AOF must stay held")
	info, err := other.Inspect(testCtx(t), name)
	require.NoError(t, err)
	assert.Equal(t, kept.Token(), info.Token, "holder after the quick restart")
	require.NoError(t, kept.Release(testCtx(t)))
	after, err := other.Acquire(testCtx(t), name)
	require.NoError(t, err)
	assert.Greater(t, after.Token(), kept.Token())
	require.NoError(t, after.Release(testCtx(t)))
}

// TestKillRestart_NoPersistence: a restart without persistence wipes the
// fence counters, so tokens repeat; a Locker that held leases across the
// restart detects the reset (the epoch key is gone) at its next renewal and
// ends every lease with ErrLost and ErrStoreReset — session and TTL leases.
func TestKillRestart_NoPersistence(t *testing.T) {
	const ttl = 3 * time.Second
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), ttl)
	name := "kill-nopersist"
	acquireN(t, l, name, 5)
	session, err := l.Acquire(testCtx(t), name)
	require.NoError(t, err)
	ttlLease, err := l.Acquire(testCtx(t), name+"-ttl", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	require.Equal(t, uint64(6), session.Token())

	killed := time.Now()
	srv.Kill()
	srv.Restart()
	doneAt := waitDone(t, session, 2*ttl, "session lease after a restart without persistence")
	t.Logf("loss detection latency (kill+restart, no persistence, SessionTTL %v): %v", ttl, doneAt.Sub(killed))
	assert.ErrorIs(t, session.Err(), lock.ErrLost)
	assert.ErrorIs(t, session.Err(), redis.ErrStoreReset, "the reset must be detected, not just a failed renewal")
	waitDone(t, ttlLease, 2*ttl, "TTL lease after a restart without persistence")
	assert.ErrorIs(t, ttlLease.Err(), redis.ErrStoreReset)
	assert.ErrorIs(t, ttlLease.Err(), lock.ErrLost)

	// The documented non-guarantee: the counter started again.
	next, err := l.Acquire(testCtx(t), name)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), next.Token(), "without persistence the fence counter restarts (tokens repeat); documented")
	require.NoError(t, next.Release(testCtx(t)))
}

// TestPause: a server stopped with SIGSTOP for longer than the session TTL
// answers nothing; the holder's Done closes by its deadline, which is at
// most SessionTTL after the pause began (the last acknowledged renewal was
// sent before it). After SIGCONT the server has expired the lease and
// another Locker gets the name with a greater token.
func TestPause(t *testing.T) {
	const ttl = time.Second
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	holder := newLocker(t, srv.Addr(), ttl)
	other := newLocker(t, srv.Addr(), ttl)
	name := "pause"
	lease, err := holder.Acquire(testCtx(t), name)
	require.NoError(t, err)
	// Let a renewal or two happen, so the deadline comes from a renewal.
	require.NoError(t, lease.Refresh(testCtx(t)))

	paused := time.Now()
	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	doneAt := waitDone(t, lease, 10*ttl, "while the server was paused")
	latency := doneAt.Sub(paused)
	t.Logf("loss detection latency (SIGSTOP, SessionTTL %v): %v", ttl, latency)
	// The deadline Done closes at, not the moment the timer ran (a loaded
	// machine runs timers late): at most SessionTTL after the pause began.
	assert.LessOrEqual(t, redis.LocalDeadline(lease).Sub(paused), ttl, "the holder's deadline (I3)")
	assert.ErrorIs(t, lease.Err(), lock.ErrLost)
	srv.Resume()
	resumed = true

	next, err := other.Acquire(testCtx(t), name)
	require.NoError(t, err)
	t.Logf("name granted elsewhere %v after the pause began", time.Since(paused))
	assert.Greater(t, next.Token(), lease.Token())
	assert.ErrorIs(t, lease.Release(testCtx(t)), lock.ErrNotHeld)
	info, err := other.Inspect(testCtx(t), name)
	require.NoError(t, err)
	assert.Equal(t, next.Token(), info.Token, "a stale Release must not touch the new holder")
	require.NoError(t, next.Release(testCtx(t)))
}

// TestHolderStopsRenewing: a holder whose renewals stop (a hung process)
// loses the name after the session TTL; a waiter on another Locker gets it
// with a greater token, so a resource that checks tokens fences the old
// holder off; the old holder's own Done closed before the hand-over.
func TestHolderStopsRenewing(t *testing.T) {
	const ttl = 500 * time.Millisecond
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	holder := newLocker(t, srv.Addr(), ttl)
	other := newLocker(t, srv.Addr(), ttl)
	name := "stops-renewing"
	lease, err := holder.Acquire(testCtx(t), name)
	require.NoError(t, err)

	type result struct {
		lease      lock.Lease
		err        error
		at         time.Time
		holderDone bool
	}
	out := make(chan result, 1)
	go func() {
		l, err := other.Acquire(testCtx(t), name)
		out <- result{l, err, time.Now(), isClosed(lease.Done())}
	}()
	waitWaiters(t, other, name, 1)

	stopped := time.Now()
	redis.StopRenewals(holder)
	var r result
	select {
	case r = <-out:
	case <-time.After(20 * ttl):
		t.Fatalf("waiter not granted within %v of the holder's renewals stopping", 20*ttl)
	}
	require.NoError(t, r.err)
	t.Logf("hand-over after renewals stopped (SessionTTL %v): %v", ttl, r.at.Sub(stopped))
	assert.True(t, r.holderDone, "the old holder's Done must close before the name is granted elsewhere (I3)")
	assert.ErrorIs(t, lease.Err(), lock.ErrLost)
	assert.Greater(t, r.lease.Token(), lease.Token(), "the old holder's token is lower: fenced")
	require.NoError(t, r.lease.Release(testCtx(t)))
}

// TestWaiterSurvivesRestart (I4): a waiter queued when the server crashes
// keeps waiting through the outage (its claim and subscription come back
// after the restart) and gets the name once the persisted lease of the
// holder, who lost it, has expired; tokens keep increasing (AOF).
func TestWaiterSurvivesRestart(t *testing.T) {
	const ttl = time.Second
	srv := testserver.StartRedis(t, testserver.RedisOptions{AppendFsyncAlways: true})
	holder := newLocker(t, srv.Addr(), ttl)
	waiter := newLocker(t, srv.Addr(), ttl)
	name := "waiter-restart"
	lease, err := holder.Acquire(testCtx(t), name)
	require.NoError(t, err)
	out := make(chan lock.Lease, 1)
	errs := make(chan error, 1)
	go func() {
		l, err := waiter.Acquire(testCtx(t), name)
		errs <- err
		out <- l
	}()
	waitWaiters(t, holder, name, 1)

	killed := time.Now()
	srv.Kill()
	waitDone(t, lease, 10*ttl, "holder's lease while the server is down")
	srv.Restart()
	require.NoError(t, <-errs)
	next := <-out
	t.Logf("waiter granted %v after the crash", time.Since(killed))
	assert.Greater(t, next.Token(), lease.Token())
	info, err := holder.Inspect(testCtx(t), name)
	require.NoError(t, err)
	assert.Equal(t, lock.Info{Name: name, Held: true, Token: next.Token()}, stateOf(info))
	require.NoError(t, next.Release(testCtx(t)))
}
