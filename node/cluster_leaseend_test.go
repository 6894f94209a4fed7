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
// leader; the two others get ErrNotHeld wrapping ErrReleased.
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
			require.ErrorIs(t, err, lock.ErrNotHeld, what)
			require.ErrorIs(t, err, lock.ErrReleased, what)
		case <-time.After(30 * time.Second):
			t.Fatalf("R4: %s(context.Background()) still blocked 30s after Done closed", what)
		}
	}
	require.NoError(t, l.Close())
}
