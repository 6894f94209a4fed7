package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// TestCluster_TypesWaitForProtocol5: with one voter of a protocol-4 build
// (from its start, so the cluster never committed level 5), Campaign,
// AcquirePermit, AcquireRead and AcquireWrite are refused with
// ErrUnsupported and nothing enters the log (the name stays free for a
// mutex); once that voter announces protocol 5, the leader commits
// SetProtocol{5} and they work.
func TestCluster_TypesWaitForProtocol5(t *testing.T) {
	const old = 1
	c := testcluster.Start(t, testcluster.Options{Size: 3, Peers: true, Edit: func(i int, cfg *node.Config) {
		if i == old {
			node.PlayProtocolFromStart(cfg, 4, fsm.Needs)
		}
	}})
	ctx := clusterCtx(t)
	l, err := c.NewLocker(ctx, 2)
	require.NoError(t, err)
	defer func() { assert.NoError(t, l.Close()) }()

	refused := map[string]func() error{
		"Campaign": func() error { _, err := l.(lock.Elector).Campaign(ctx, "v5", "me"); return err },
		"AcquirePermit": func() error {
			_, err := l.(lock.Semaphores).AcquirePermit(ctx, "v5", 2)
			return err
		},
		"AcquireRead":  func() error { _, err := l.(lock.RWLockers).AcquireRead(ctx, "v5"); return err },
		"AcquireWrite": func() error { _, err := l.(lock.RWLockers).TryAcquireWrite(ctx, "v5"); return err },
	}
	for call, do := range refused {
		err := do()
		require.ErrorIs(t, err, lock.ErrUnsupported, call)
		assert.Contains(t, err.Error(), "speaks 4", call)
	}
	for i := range c.Size() {
		assert.Equal(t, 4, c.Node(i).Stats().Protocol, "n%d", i+1)
	}
	m, err := l.TryAcquire(ctx, "v5")
	require.NoError(t, err, "nothing of the refused calls entered the log")
	require.NoError(t, m.Release(ctx))

	node.PlayProtocol(c.Node(old), 5, fsm.Needs)
	require.Eventually(t, func() bool {
		for i := range c.Size() {
			if c.Node(i).Stats().Protocol != 5 {
				return false
			}
		}
		return true
	}, 15*time.Second, 20*time.Millisecond, "the leader commits level 5 once it hears the upgraded voter")
	term, err := l.(lock.Elector).Campaign(ctx, "v5", "me")
	require.NoError(t, err)
	require.NoError(t, term.Release(ctx))
}

// TestCluster_ObserveAcrossNodes: an observer on the leader sees a term
// won through a follower, its proclaimed value, then, when the term
// resigns with a candidate queued on the third node, that candidate's
// term with a greater token and no empty seat between, and the empty seat
// after its resign.
func TestCluster_ObserveAcrossNodes(t *testing.T) {
	c := startCluster(t, 3, false)
	ctx := clusterCtx(t)
	li := c.Leader()
	holderAt, watchAt, nextAt := (li+1)%3, li, (li+2)%3
	holder, err := c.NewLocker(ctx, holderAt)
	require.NoError(t, err)
	watcher, err := c.NewLocker(ctx, watchAt)
	require.NoError(t, err)
	defer func() { assert.NoError(t, watcher.Close()) }()
	next, err := c.NewLocker(ctx, nextAt)
	require.NoError(t, err)
	defer func() { assert.NoError(t, next.Close()) }()

	octx, stop := context.WithCancel(ctx)
	defer stop()
	states, err := watcher.(lock.Elector).Observe(octx, "e")
	require.NoError(t, err)
	require.False(t, receive(t, ctx, states).Elected())

	term, err := holder.(lock.Elector).Campaign(ctx, "e", "first")
	require.NoError(t, err)
	got := receive(t, ctx, states)
	assert.Equal(t, term.Token(), got.Token)
	assert.Equal(t, "first", got.Value)
	require.NoError(t, term.Proclaim(ctx, "first, again"))
	got = receive(t, ctx, states)
	assert.Equal(t, "first, again", got.Value)
	assert.Equal(t, term.Token(), got.Token)

	campaign := make(chan lock.Term, 1)
	go func() {
		t2, err := next.(lock.Elector).Campaign(ctx, "e", "second")
		assert.NoError(t, err)
		campaign <- t2
	}()
	require.Eventually(t, func() bool {
		info, err := watcher.Inspect(ctx, "e")
		return err == nil && info.Waiters == 1
	}, 10*time.Second, 10*time.Millisecond, "the second candidate queues")
	require.NoError(t, term.Release(ctx))
	got = receive(t, ctx, states)
	assert.Equal(t, "second", got.Value, "the hand-off shows no empty seat between the terms")
	assert.Greater(t, got.Token, term.Token())
	t2 := <-campaign
	require.NotNil(t, t2)
	assert.Equal(t, t2.Token(), got.Token)
	require.NoError(t, t2.Release(ctx))
	assert.False(t, receive(t, ctx, states).Elected(), "the seat is empty after the last resign")
	assert.NoError(t, holder.Close())
}

// receive is the next state on states.
func receive(t *testing.T, ctx context.Context, states <-chan lock.LeaderInfo) lock.LeaderInfo {
	t.Helper()
	select {
	case s, ok := <-states:
		require.True(t, ok, "the Observe channel closed")
		return s
	case <-ctx.Done():
		t.Fatal("no state delivered")
		return lock.LeaderInfo{}
	}
}

// TestCluster_ObserveWithoutQuorum: Observe and Leader on a node cut off
// from a quorum fail with ErrNoQuorum when ctx ends: the first state
// needs a read index, and the node does not guess.
func TestCluster_ObserveWithoutQuorum(t *testing.T) {
	c := startCluster(t, 3, true)
	ctx := clusterCtx(t)
	l, err := c.NewLocker(ctx, 0)
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	c.Kill(1)
	c.Kill(2)
	// A leader may still confirm a read index with a heartbeat its killed
	// peers answered just before they stopped; once it has stepped down
	// (no contact for its lease), nothing can.
	require.Eventually(t, func() bool { return c.Node(0).Stats().State != "leader" },
		15*time.Second, 10*time.Millisecond, "n1 steps down without a quorum")
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = l.(lock.Elector).Observe(short, "e")
	require.ErrorIs(t, err, lock.ErrNoQuorum)
	short2, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	_, err = l.(lock.Elector).Leader(short2, "e")
	require.ErrorIs(t, err, lock.ErrNoQuorum)
}

// TestTerm_ResignWithoutQuorumReturns: a resign whose release cannot
// reach the store returns, whatever ctx, once the clean-up bound passes:
// the term has ended here already (Done closed first), and the release
// goes on in the background. With a ctx that never ends it waited for a
// quorum for ever, where a mutex's Release returns when its lease ends.
func TestTerm_ResignWithoutQuorumReturns(t *testing.T) {
	c := startCluster(t, 3, false)
	ctx := clusterCtx(t)
	l, err := c.NewLocker(ctx, 0)
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	term, err := l.(lock.Elector).Campaign(ctx, "e", "me")
	require.NoError(t, err)
	c.Kill(1)
	c.Kill(2)
	resigned := make(chan error, 1)
	go func() { resigned <- term.Release(context.Background()) }()
	select {
	case err = <-resigned:
	case <-ctx.Done():
		t.Fatal("a resign without a quorum never returned")
	}
	require.ErrorIs(t, err, lock.ErrNoQuorum)
	assert.Contains(t, err.Error(), "goes on in the background")
	assert.ErrorIs(t, term.Err(), lock.ErrReleased)
}
