package node

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkLocker measures the public Locker's calls on one node, serial,
// with the in-memory log (store=mem) or durable (store=disk):
// op=tryacquire-release is TryAcquire of a free name and the lease's
// Release, two entries and the lease bookkeeping (BenchmarkNode's W1 runs
// the same through Acquire, from the benchmark's parallel workers).
func BenchmarkLocker(b *testing.B) {
	for _, store := range []string{"mem", "disk"} {
		b.Run("store="+store+"/op=tryacquire-release", func(b *testing.B) {
			n := newBenchNode(b, store)
			ctx := context.Background()
			lk, err := n.NewLocker(ctx)
			require.NoError(b, err)
			defer func() { _ = lk.Close() }()
			b.ReportAllocs()
			for b.Loop() {
				l, err := lk.TryAcquire(ctx, "bench/free")
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
