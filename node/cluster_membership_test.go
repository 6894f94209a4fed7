package node_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// Cluster tests of membership: founding by Peers, joining and leadership
// transfer under load, non-voters, Leave and RemoveServer.

// startFounders starts a cluster whose nodes, with these IDs, all found it
// (Config.Peers); tlsFor, if set, gives the TLS config of the node with
// that ID.
func startFounders(t *testing.T, ids []string, tlsFor func(id string) *tls.Config) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, testcluster.Options{Size: len(ids), Peers: true, Edit: func(i int, cfg *node.Config) {
		cfg.ID = ids[i]
		cfg.StartTimeout = 20 * time.Second
		if tlsFor != nil {
			cfg.TLS = tlsFor(ids[i])
		}
	}})
}

func TestCluster_PeersBootstrap(t *testing.T) {
	ctx := clusterCtx(t)
	c := startFounders(t, []string{"a", "b", "c"}, nil)
	members, err := c.Node(2).Members()
	require.NoError(t, err)
	require.Len(t, members, 3)
	leaders := 0
	for _, m := range members {
		assert.True(t, m.Voter)
		if m.Leader {
			leaders++
		}
	}
	assert.Equal(t, 1, leaders)
	l, err := c.Node(0).Acquire(ctx, "x")
	require.NoError(t, err)
	_, err = c.Node(1).TryAcquire(ctx, "x")
	assert.ErrorIs(t, err, lock.ErrHeld)
	st := c.Node(1).Stats()
	assert.Equal(t, "b", st.ID)
	assert.NotEmpty(t, st.LeaderID)
	assert.GreaterOrEqual(t, st.AppliedIndex, l.Token())
}

func TestCluster_JoinAndTransferUnderLoad(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 6 {
		n := c.Node(w % 3)
		wg.Go(func() { acquireLoop(ctx, n, fmt.Sprintf("load-%d", w%2), stop, errs) })
	}
	// Join a fourth node under load.
	i4, err := c.Add(1)
	require.NoError(t, err)
	c.WaitMembers(4)
	l, err := c.Node(i4).Acquire(ctx, "from-n4")
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))

	// Transfer leadership under load.
	li := c.Leader()
	require.NoError(t, node.RaftOf(c.Node(li)).LeadershipTransfer().Error())
	require.Eventually(t, func() bool {
		nli, ok := c.LeaderNow()
		return ok && nli != li
	}, 10*time.Second, 10*time.Millisecond)

	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// acquireLoop acquires and releases name on n until stop closes, sending
// to errs any error and any token not above the one before.
func acquireLoop(ctx context.Context, n *node.Node, name string, stop <-chan struct{}, errs chan<- error) {
	var last uint64
	for {
		select {
		case <-stop:
			return
		default:
		}
		l, err := n.Acquire(ctx, name)
		if err != nil {
			errs <- err
			return
		}
		if l.Token() <= last {
			errs <- fmt.Errorf("token went back: %d after %d", l.Token(), last)
		}
		last = l.Token()
		if err := l.Release(ctx); err != nil {
			errs <- err
			return
		}
	}
}

func TestCluster_NonVoterAndRemove(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	nvi, err := c.Add(2, func(cfg *node.Config) {
		cfg.ID = "nv"
		cfg.NonVoter = true
	})
	require.NoError(t, err)
	nv := c.Node(nvi)
	c.WaitMembers(4)
	members, err := nv.Members()
	require.NoError(t, err)
	for _, m := range members {
		assert.Equal(t, m.ID != "nv", m.Voter, m.ID)
	}
	l, err := nv.Acquire(ctx, "from-nonvoter")
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))

	require.NoError(t, c.Stop(nvi, func(n *node.Node) error { return n.Leave(ctx) }))
	c.WaitMembers(3)
	require.NoError(t, c.Node(0).RemoveServer(ctx, "n3"))
	_ = c.Stop(2, (*node.Node).Abort)
	c.WaitMembers(2)
	_, err = c.Node(1).Acquire(ctx, "after-remove")
	assert.NoError(t, err, "two voters of two still have a quorum")
}
