package clustertest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// TestPartition_MinorityCannotGrant: a node cut off from the majority
// cannot grant (no quorum within the caller's deadline), the majority can,
// and after the partition heals the minority node serves again. A single
// cut link leaves a full cluster working.
func TestPartition_MinorityCannotGrant(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	li := c.Leader()
	minority := (li + 1) % 3

	c.net.cutLink(li, minority) // one link down: the follower still reaches the other follower, not the leader
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.Node(li).Acquire(ctx, "one-link")
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))
	c.net.heal()

	c.net.partition([]int{minority}, []int{li, (li + 2) % 3})
	short, cancelShort := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancelShort()
	_, err = c.Node(minority).TryAcquire(short, "minority")
	assert.ErrorIs(t, err, lock.ErrNoQuorum)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	majority := c.Node(c.Leader())
	l, err = majority.Acquire(ctx, "majority")
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))

	// After the heal the leader's replication to the minority node may
	// still be backing off (hashicorp/raft: up to ~10 s after a run of
	// failed attempts), so give catching up its own, longer deadline.
	c.net.heal()
	healed, cancelHealed := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelHealed()
	start := time.Now()
	l, err = c.Node(minority).Acquire(healed, "after-heal")
	t.Logf("heal -> minority node's next acquire: %v", time.Since(start))
	ctx = healed
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))
}
