package node_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/lock/locktest"
)

// The cluster tests of package node run on internal/testcluster: nodes
// over real TCP on loopback, session TTL 2 s. They are in package node_test
// (testcluster imports node); export_test.go gives them the few internals
// they reach.

// startCluster starts size nodes: n1 founds the cluster, the others join
// it; durable nodes keep their state in a DataDir.
func startCluster(t *testing.T, size int, durable bool) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, testcluster.Options{Size: size, Durable: durable})
}

// clusterCtx bounds a cluster test's calls.
func clusterCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCluster_Conformance(t *testing.T) {
	c := startCluster(t, 3, false)
	next := 0
	var mu sync.Mutex
	locktest.Run(t, func(t *testing.T) lock.Locker {
		mu.Lock()
		n := c.Node(next % c.Size())
		next++
		mu.Unlock()
		l, err := n.NewLocker(context.Background())
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() })
		return l
	}, locktest.FIFO(), locktest.ObserveEvery(), locktest.Outage(clusterOutage))
}

// clusterOutage gives each outage subtest of the conformance suite a fresh
// durable 3-node cluster whose Lockers all live on n1. The cut kills n2 and
// n3: n1 and its Lockers stay up without a quorum. The heal restarts them
// and waits for a leader.
func clusterOutage(t *testing.T) locktest.OutageStore {
	c := startCluster(t, 3, true)
	return locktest.OutageStore{
		NewLocker: func(t *testing.T) lock.Locker {
			l, err := c.NewLocker(context.Background(), 0)
			require.NoError(t, err)
			t.Cleanup(func() { _ = l.Close() })
			return l
		},
		Cut: func() {
			c.Kill(1)
			c.Kill(2)
		},
		Heal: func() {
			_, err := c.RestartAll()
			require.NoError(t, err, "restarting n2 and n3")
			c.Leader()
		},
	}
}

func TestCluster_AcquireThroughFollower(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, true)
	f := c.Node(c.Follower())
	l, err := f.Acquire(ctx, "job")
	require.NoError(t, err)
	leader := c.Node(c.Leader())
	info, err := leader.Inspect(ctx, "job")
	require.NoError(t, err)
	assert.True(t, info.Held)
	assert.Equal(t, l.Token(), info.Token)
	_, err = leader.TryAcquire(ctx, "job")
	assert.ErrorIs(t, err, lock.ErrHeld)
	require.NoError(t, l.Release(ctx))
	info, err = f.Inspect(ctx, "job")
	require.NoError(t, err)
	assert.False(t, info.Held, "a follower's Inspect is linearizable")
	local, err := f.InspectLocal("job")
	require.NoError(t, err)
	assert.False(t, local.Held, "after a linearizable read, the local state has caught up")
	_, err = f.InspectLocal("")
	assert.ErrorIs(t, err, lock.ErrInvalidName)
}

func TestCluster_HandoffAcrossNodes(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	a, b := c.Node(1), c.Node(2)
	held, err := a.Acquire(ctx, "handoff")
	require.NoError(t, err)
	got := make(chan lock.Lease, 1)
	errs := make(chan error, 1)
	go func() {
		l, err := b.Acquire(ctx, "handoff")
		if err != nil {
			errs <- err
			return
		}
		got <- l
	}()
	require.Eventually(t, func() bool {
		info, err := a.Inspect(ctx, "handoff")
		return err == nil && info.Waiters == 1
	}, 10*time.Second, 5*time.Millisecond)
	before := a.Stats().CommitIndex
	require.NoError(t, held.Release(ctx))
	select {
	case l := <-got:
		assert.Greater(t, l.Token(), held.Token())
		assert.LessOrEqual(t, l.Token(), before+1, "granted by the release entry itself: one commit")
	case err := <-errs:
		t.Fatal(err)
	}
}
