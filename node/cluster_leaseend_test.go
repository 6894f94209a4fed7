package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// R4: a Refresh and a Release in flight return once a concurrent Release
// ends the lease, whatever their ctx. Both wait on a forward to a leader
// that became a black hole; the concurrent Release goes through the new
// leader; the two others get ErrNotHeld wrapping ErrReleased, or nil if
// they got through to the new leader first (call gives up a forward to a
// leader that is no longer the leader).
func TestCluster_CallsInFlightReturnOnConcurrentRelease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cut := newCutNet()
	c := testcluster.Start(t, testcluster.Options{Size: 3, Net: cut, Edit: func(_ int, cfg *node.Config) {
		cfg.SessionTTL = 10 * time.Second
	}})
	li := c.Leader()
	l, err := c.NewLocker(ctx, (li+1)%3)
	require.NoError(t, err)
	lease, err := l.Acquire(ctx, "r")
	require.NoError(t, err)

	cut.blackhole(li)
	refreshed, released := make(chan error, 1), make(chan error, 1)
	go func() { refreshed <- lease.Refresh(context.Background()) }()
	go func() { released <- lease.Release(context.Background()) }()
	require.Eventually(t, func() bool {
		for j := 0; j < 3; j++ {
			if j != li && node.RaftOf(c.Node(j)).State() == raft.Leader {
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "no new leader")

	require.Eventually(t, func() bool {
		select {
		case <-lease.Done():
			return true
		default:
		}
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		err := lease.Release(rctx)
		t.Logf("concurrent Release: %v", err) // ErrNoQuorum while the new leader is not ready
		return err == nil
	}, time.Minute, 10*time.Millisecond, "the concurrent Release never landed")
	require.ErrorIs(t, lease.Err(), lock.ErrReleased)
	for what, ch := range map[string]chan error{"Refresh": refreshed, "Release": released} {
		select {
		case err := <-ch:
			if err != nil { // nil: it got through to the new leader first
				require.ErrorIs(t, err, lock.ErrNotHeld, what)
				require.ErrorIs(t, err, lock.ErrReleased, what)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("R4: %s(context.Background()) still blocked 30s after Done closed", what)
		}
	}
	require.NoError(t, l.Close())
}

// R4: `defer lease.Release(context.Background())` made through a follower
// just as the leader becomes a black hole (connections open, nothing comes
// back). The other two elect a new leader and serve; the session stays
// alive through it, so the lease does not end by itself. The Release must
// not wait on the old leader forever: it gives that forward up when the
// follower learns of the new leader, releases there, and the name is free.
func TestCluster_ReleaseThroughFollowerToBlackHoledLeader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cut := newCutNet()
	c := testcluster.Start(t, testcluster.Options{Size: 3, Net: cut, Edit: func(_ int, cfg *node.Config) {
		cfg.SessionTTL = 5 * time.Second
	}})
	li := c.Leader()
	fi := (li + 1) % 3
	l, err := c.NewLocker(ctx, fi)
	require.NoError(t, err)
	lease, err := l.Acquire(ctx, "r")
	require.NoError(t, err)

	cut.blackhole(li)
	released := make(chan error, 1)
	go func() { released <- lease.Release(context.Background()) }()
	select {
	case err := <-released:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		_ = l.Close() // lets the Release return
		t.Fatalf("R4: Release(context.Background()) still blocked a minute after the leader became a black hole (after Close: %v)", <-released)
	}
	require.ErrorIs(t, lease.Err(), lock.ErrReleased)
	other, err := c.NewLocker(ctx, fi)
	require.NoError(t, err)
	got, err := other.TryAcquire(ctx, "r")
	require.NoError(t, err, "the released name is free")
	require.NoError(t, got.Release(ctx))
	require.NoError(t, other.Close())
	require.NoError(t, l.Close())
}
