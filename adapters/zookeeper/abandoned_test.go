package zookeeper_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/internal/testserver"
)

// testAbandonedCallWritesNothing: a read whose ctx ends while the server is
// paused returns ctx's error; when the server resumes, the abandoned
// request completes in the call's goroutine. Its result must not be
// written where the caller read its return values (run under -race: the
// detector sees the late write, as the make-test loop did in
// OutageNoQuorum, from lease.confirm's exists).
func testAbandonedCallWritesNothing(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	l := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	lease, err := l.Acquire(ctx, "abandoned-call")
	require.NoError(t, err)
	path := zookeeper.LeasePath(lease)
	for what, read := range zookeeper.Reads(l, path, zookeeper.Dir(l, "abandoned-call")) {
		require.NoError(t, read(ctx), what)
		z.Pause()
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := read(short)
		cancel()
		z.Resume()
		require.ErrorIs(t, err, context.DeadlineExceeded, what)
		// No request of this goroutine before the abandoned one is
		// answered: go-zookeeper's request queue would order the caller's
		// read of its results before the late write, hiding the race.
		eventually(t, time.Minute, what+": the abandoned call completes", func() bool { return zookeeper.CallsRunning(l) == 0 })
		require.NoError(t, read(ctx), what+" after the resume")
	}
	require.NoError(t, lease.Release(ctx))
}
