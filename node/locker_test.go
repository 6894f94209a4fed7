package node

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/lock/locktest"
)

// TestNode_Conformance runs the suite on one in-process node. It has no
// locktest.Outage: a one-node store is its own quorum and its Lockers reach
// it in-process, so nothing can cut them off; TestCluster_Conformance runs
// the outage subtests.
func TestNode_Conformance(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		locktest.Run(t, shared(newNode(t, Config{})), locktest.FIFO(), locktest.ObserveEvery())
	})
	t.Run("durable", func(t *testing.T) {
		locktest.Run(t, shared(newNode(t, Config{DataDir: t.TempDir()})), locktest.FIFO(), locktest.ObserveEvery())
	})
}

func TestNode_DefaultClientIsALocker(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	l, err := n.Acquire(ctx, "job")
	require.NoError(t, err)
	_, err = n.TryAcquire(ctx, "job")
	assert.ErrorIs(t, err, lock.ErrHeld)
	info, err := n.Inspect(ctx, "job")
	require.NoError(t, err)
	assert.Equal(t, l.Token(), info.Token)
	require.NoError(t, n.Close())
	assert.ErrorIs(t, l.Err(), lock.ErrReleased)
	_, err = n.Acquire(ctx, "job")
	assert.ErrorIs(t, err, lock.ErrClosed)
	_, err = n.NewLocker(ctx)
	assert.ErrorIs(t, err, lock.ErrClosed)
	assert.NoError(t, n.Close(), "Close is idempotent")
}
