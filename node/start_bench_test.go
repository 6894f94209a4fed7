package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkStart measures New on a DataDir whose state holds N idle
// session leases (one Locker's), snapshotted and its log compacted: the
// start-up checks and Raft's restore, until the node leads. Building the
// DataDir is not timed; each restarted node is aborted untimed.
func BenchmarkStart(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("locks=%d", n), func(b *testing.B) {
			cfg := Config{DataDir: b.TempDir(), TrailingLogs: 1,
				Limits: Limits{Names: n + DefaultLimits.Names, NamesPerSession: n}}
			nd, err := New(cfg)
			require.NoError(b, err)
			holdIdle(b, nd, n)
			require.NoError(b, nd.raft.Snapshot().Error())
			require.NoError(b, nd.Abort())
			b.ResetTimer()
			for range b.N {
				again, err := New(cfg)
				require.NoError(b, err)
				b.StopTimer()
				require.NoError(b, again.Abort())
				b.StartTimer()
			}
		})
	}
}

// holdIdle acquires n names through one Locker of nd, 32 at a time, and
// leaves them held.
func holdIdle(b *testing.B, nd *Node, n int) {
	ctx := context.Background()
	lk, err := nd.NewLocker(ctx)
	require.NoError(b, err)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if _, err := lk.Acquire(ctx, fmt.Sprintf("idle/%d", i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
}
