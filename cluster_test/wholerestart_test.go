package clustertest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// TestWholeClusterRestart (I6): every node is killed at once while a TTL
// lease, a session lease and queued waiters exist; restarted from their
// DataDirs, the nodes must report the same holders, tokens and queues. The
// dead sessions were re-armed at a full TTL by the new leader, so they then
// expire: the session lease and every queued claim go, the TTL lease stays.
// A fresh grant must carry a token above every earlier one.
func TestWholeClusterRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	began := time.Now()
	c := newCluster(t, 3)
	defer func() { t.Logf("test body took %v (cluster Close follows)", time.Since(began).Round(time.Millisecond)) }()

	la, err := c.NewLocker(ctx, 0)
	require.NoError(t, err)
	a, err := la.Acquire(ctx, "a", lock.WithTTL(time.Hour), lock.WithOwner("ttl-holder"))
	require.NoError(t, err)
	lb, err := c.NewLocker(ctx, 1)
	require.NoError(t, err)
	b, err := lb.Acquire(ctx, "b", lock.WithOwner("session-holder"))
	require.NoError(t, err)
	results := queueRestartWaiters(ctx, t, c)
	var before map[string]lock.Info
	require.Eventually(t, func() bool {
		before = map[string]lock.Info{}
		for _, name := range []string{"a", "b"} {
			info, err := c.Node(2).Inspect(ctx, name)
			if err != nil || info.Waiters != 2 {
				return false
			}
			before[name] = info
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, a.Token(), before["a"].Token)
	require.Equal(t, b.Token(), before["b"].Token)
	t.Logf("before: a=%+v b=%+v", before["a"], before["b"])

	killWholeCluster(t, c, results)
	assert.Error(t, a.Err(), "the TTL lease's local handle ends with its node")
	assert.Error(t, b.Err(), "the session lease's local handle ends with its node")

	restarted := restartWholeCluster(ctx, t, c, before)
	sessionsExpireAfterRestart(ctx, t, c, before["a"].Token, restarted)

	// The token counter survived: a new name gets a larger token than any
	// earlier grant.
	fresh, err := c.Node(2).Acquire(ctx, "fresh")
	require.NoError(t, err)
	t.Logf("fresh token %d (a %d, b %d)", fresh.Token(), a.Token(), b.Token())
	assert.Greater(t, fresh.Token(), max(a.Token(), b.Token()))
	require.NoError(t, fresh.Release(ctx))
	// And "b" is grantable again, with a larger token still.
	nb, err := c.Node(0).Acquire(ctx, "b")
	require.NoError(t, err)
	assert.Greater(t, nb.Token(), fresh.Token())
	require.NoError(t, nb.Release(ctx))
}

// restartWaiter is a queued waiter of TestWholeClusterRestart and what its
// Acquire returned.
type restartWaiter struct {
	name string
	node int
	err  error
}

// restartWaiters are the waiters TestWholeClusterRestart queues: two per
// name, on the nodes that do not hold it.
var restartWaiters = []restartWaiter{{"a", 1, nil}, {"a", 2, nil}, {"b", 0, nil}, {"b", 2, nil}}

// queueRestartWaiters starts the Acquires of restartWaiters, each on a
// Locker of its own; none may be granted while the holders live.
func queueRestartWaiters(ctx context.Context, t *testing.T, c *cluster) <-chan restartWaiter {
	t.Helper()
	results := make(chan restartWaiter, len(restartWaiters))
	for _, w := range restartWaiters {
		l, err := c.NewLocker(ctx, w.node)
		require.NoError(t, err)
		go func() {
			lease, err := l.Acquire(ctx, w.name)
			if err == nil {
				err = fmt.Errorf("granted token %d while the holder lives", lease.Token())
			}
			w.err = err
			results <- w
		}()
	}
	return results
}

// killWholeCluster kills every node at one instant (every link cut, then
// every node aborted) and checks that every waiter's Acquire returned
// ErrClosed or ErrLost.
func killWholeCluster(t *testing.T, c *cluster, results <-chan restartWaiter) {
	t.Helper()
	killed := time.Now()
	for i := range c.Size() {
		c.net.Isolate(i)
	}
	for i := range c.Size() {
		c.Kill(i)
	}
	t.Logf("killed all nodes in %v", time.Since(killed).Round(time.Millisecond))
	for range restartWaiters {
		select {
		case r := <-results:
			t.Logf("waiter for %q on n%d returned: %v", r.name, r.node+1, r.err)
			assert.True(t, errors.Is(r.err, lock.ErrClosed) || errors.Is(r.err, lock.ErrLost),
				"waiter %q on n%d: %v, want ErrClosed or ErrLost", r.name, r.node+1, r.err)
		case <-time.After(10 * time.Second):
			t.Fatal("a waiter's Acquire did not return within 10 s of its node's Abort")
		}
	}
}

// restartWholeCluster restarts every node and checks, right after (well
// within one session TTL of the new leader's election), that the state is
// as it was; it returns when the restart ended.
func restartWholeCluster(ctx context.Context, t *testing.T, c *cluster, before map[string]lock.Info) time.Time {
	t.Helper()
	start := time.Now()
	took, err := c.RestartAll()
	require.NoError(t, err)
	restarted := time.Now()
	t.Logf("restarted all nodes in %v (New per node: %v)", restarted.Sub(start).Round(time.Millisecond), took)
	for _, name := range []string{"a", "b"} {
		info, err := c.Node(0).Inspect(ctx, name)
		require.NoError(t, err)
		t.Logf("after restart (+%v): %+v", time.Since(restarted).Round(time.Millisecond), info)
		assert.True(t, info.Held, "%q held after restart", name)
		assert.Equal(t, before[name].Token, info.Token, "%q token after restart", name)
		assert.Equal(t, before[name].Owner, info.Owner, "%q owner after restart", name)
		assert.Equal(t, before[name].Waiters, info.Waiters, "%q waiters after restart", name)
	}
	return restarted
}

// sessionsExpireAfterRestart: the dead sessions expire one TTL after the
// new leader re-armed them: "b" (a session lease) becomes free, every
// queued claim is withdrawn, "a" (a TTL lease of an hour) stays held with
// its token aToken.
func sessionsExpireAfterRestart(ctx context.Context, t *testing.T, c *cluster, aToken uint64, restarted time.Time) {
	t.Helper()
	var infoA, infoB lock.Info
	require.Eventually(t, func() bool {
		var errA, errB error
		infoA, errA = c.Node(1).Inspect(ctx, "a")
		infoB, errB = c.Node(1).Inspect(ctx, "b")
		return errA == nil && errB == nil && !infoB.Held && infoB.Waiters == 0 && infoA.Waiters == 0
	}, 6*sessionTTL, 20*time.Millisecond, "dead sessions expire after restart")
	t.Logf("restart -> dead sessions expired: %v; a=%+v b=%+v", time.Since(restarted).Round(time.Millisecond), infoA, infoB)
	assert.True(t, infoA.Held, "TTL lease outlives its session")
	assert.Equal(t, aToken, infoA.Token)
	assert.Greater(t, infoA.ExpiresIn, 50*time.Minute, "TTL lease keeps its TTL")
}
