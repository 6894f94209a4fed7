package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/lock/locktest"
)

// testCluster is n nodes over real TCP on loopback: the first founds the
// cluster, the others join it.
type testCluster struct {
	t     *testing.T
	nodes []*Node
	cfgs  []Config
}

func newTestCluster(t *testing.T, size int, durable bool) *testCluster {
	t.Helper()
	tc := &testCluster{t: t}
	// Stop every node at once, abruptly: closed gracefully one by one, the
	// last ones would wait for a quorum that is gone. Graceful Close has
	// tests of its own.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range tc.nodes {
			if n != nil {
				wg.Go(func() { _ = n.Abort() })
			}
		}
		wg.Wait()
	})
	for i := range size {
		cfg := Config{
			ID:         fmt.Sprintf("n%d", i+1),
			Addr:       "127.0.0.1:0",
			SessionTTL: 2 * time.Second,
		}
		if durable {
			cfg.DataDir = t.TempDir()
		}
		if i == 0 {
			cfg.Peers = []Peer{{ID: cfg.ID}}
		} else {
			cfg.Join = tc.nodes[0].Addr()
		}
		n, err := New(cfg)
		require.NoError(t, err, "start %s", cfg.ID)
		// A restart must reuse the address peers know.
		cfg.Addr, cfg.Join, cfg.Peers = n.Addr(), "", nil
		tc.nodes = append(tc.nodes, n)
		tc.cfgs = append(tc.cfgs, cfg)
	}
	tc.waitMembers(size)
	return tc
}

// waitMembers waits until every live node sees size members and a leader.
func (tc *testCluster) waitMembers(size int) {
	tc.t.Helper()
	require.Eventually(tc.t, func() bool {
		for _, n := range tc.nodes {
			if n == nil {
				continue
			}
			m, err := n.Members()
			if err != nil || len(m) != size {
				return false
			}
			if id, _ := n.Leader(); id == "" {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond)
}

func (tc *testCluster) leader() (int, *Node) {
	tc.t.Helper()
	for {
		for i, n := range tc.nodes {
			if n != nil && n.raft.State() == raft.Leader && n.leading.isOpen() {
				return i, n
			}
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-tc.t.Context().Done():
			tc.t.Fatal("no leader")
		}
	}
}

func (tc *testCluster) follower() *Node {
	tc.t.Helper()
	li, _ := tc.leader()
	for i, n := range tc.nodes {
		if i != li && n != nil {
			return n
		}
	}
	tc.t.Fatal("no follower")
	return nil
}

func TestCluster_Conformance(t *testing.T) {
	tc := newTestCluster(t, 3, false)
	next := 0
	var mu sync.Mutex
	locktest.Run(t, func(t *testing.T) lock.Locker {
		mu.Lock()
		n := tc.nodes[next%len(tc.nodes)]
		next++
		mu.Unlock()
		l, err := n.NewLocker(context.Background())
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() })
		return l
	}, locktest.FIFO())
}

func TestCluster_AcquireThroughFollower(t *testing.T) {
	ctx := testCtx(t)
	tc := newTestCluster(t, 3, true)
	f := tc.follower()
	l, err := f.Acquire(ctx, "job")
	require.NoError(t, err)
	_, leader := tc.leader()
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
	ctx := testCtx(t)
	tc := newTestCluster(t, 3, false)
	a, b := tc.nodes[1], tc.nodes[2]
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

func TestCluster_LeaderCrash(t *testing.T) {
	ctx := testCtx(t)
	tc := newTestCluster(t, 3, true)
	li, leader := tc.leader()
	_, err := leader.Acquire(ctx, "before")
	require.NoError(t, err)
	crashed := time.Now()
	require.NoError(t, leader.Abort())
	tc.nodes[li] = nil

	survivor := tc.nodes[(li+1)%3]
	l, err := survivor.Acquire(ctx, "after-crash")
	require.NoError(t, err)
	t.Logf("leader crash to next acquire: %v", time.Since(crashed))
	assert.NotZero(t, l.Token())

	// The crashed node restarts on its DataDir and catches up.
	n, err := New(tc.cfgs[li])
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	tc.nodes[li] = n
	info, err := n.Inspect(ctx, "after-crash")
	require.NoError(t, err)
	assert.Equal(t, l.Token(), info.Token)
}

func TestCluster_JoinAndTransferUnderLoad(t *testing.T) {
	ctx := testCtx(t)
	tc := newTestCluster(t, 3, false)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	var ops sync.Map
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := tc.nodes[w%3]
			name := fmt.Sprintf("load-%d", w%2)
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
				ops.Store(w, last)
				if err := l.Release(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// Join a fourth node under load.
	cfg := Config{ID: "n4", Addr: "127.0.0.1:0", Join: tc.nodes[1].Addr(), SessionTTL: 2 * time.Second}
	n4, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n4.Close() })
	tc.nodes = append(tc.nodes, n4)
	tc.waitMembers(4)
	l, err := n4.Acquire(ctx, "from-n4")
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))

	// Transfer leadership under load.
	li, leader := tc.leader()
	require.NoError(t, leader.raft.LeadershipTransfer().Error())
	require.Eventually(t, func() bool {
		nli, _ := tc.leader()
		return nli != li
	}, 10*time.Second, 10*time.Millisecond)

	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
