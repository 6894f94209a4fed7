package node_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// TestReview8_KeyedGrantToAClosingNodeIsNotOrphaned: an AcquireKeyed
// waits at a follower; the store grants it just as the follower closes
// (the follower applies late). The waiter fails with lock.ErrClosed, so
// nobody ever learns the key. grantedToNobody leaves the grant to Close
// ("Close withdraws it with the session instead"), but from level 3
// closing a node's session leaves its keyed TTL leases: the lease stays
// held by nobody for its whole TTL. A call that failed must not leave a
// lease behind (I4).
func TestReview8_KeyedGrantToAClosingNodeIsNotOrphaned(t *testing.T) {
	c := startLevel3(t, 3, false)
	ctx := clusterCtx(t)
	leader := c.Leader()
	f := (leader + 1) % 3

	held, err := c.Node(leader).Acquire(ctx, "x")
	require.NoError(t, err)
	type result struct {
		g   node.Grant
		err error
	}
	got := make(chan result, 1)
	go func() {
		g, err := c.Node(f).AcquireKeyed(ctx, "x", lock.WithTTL(time.Hour))
		got <- result{g, err}
	}()
	waitWaiters(t, c, f, "x", 1)
	waitWaiters(t, c, leader, "x", 1)

	// The follower falls behind; the store grants its claim.
	release := node.HoldApplies(c.Node(f))
	t.Cleanup(release)
	require.NoError(t, held.Release(ctx))
	waitFor(t, func() bool {
		info, err := c.Node(leader).InspectLocal("x")
		return err == nil && info.Held && info.Token != held.Token()
	})

	// The follower closes before it applies the grant.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c.Close(f)
	}()
	var r result
	select {
	case r = <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("the waiting AcquireKeyed did not end when its node closed")
	}
	require.Error(t, r.err, "the caller got no grant, so no key")
	release()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("close did not return")
	}

	assert.Eventually(t, func() bool {
		info, err := c.Node(leader).Inspect(ctx, "x")
		return err == nil && !info.Held
	}, 15*time.Second, 10*time.Millisecond, "a keyed lease whose caller got an error is not held for its TTL by nobody")
}
