package zookeeper_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/internal/testserver"
)

// BenchmarkZooKeeper measures Acquire+Release on a standalone server (one
// op = one acquire and one release): W1 one worker, W2 16 workers on their
// own names, W3 16 workers on one name (each op is a hand-off). Each worker
// has its own Locker (session).
//
//	go test -run '^$' -bench BenchmarkZooKeeper -benchtime 5s ./adapters/zookeeper
func BenchmarkZooKeeper(b *testing.B) {
	z := testserver.StartZooKeeper(b, zkOptions())
	servers := []string{z.Addr()}
	for _, w := range []struct {
		name    string
		workers int
		shared  bool
	}{
		{"W1", 1, false},
		{"W2", 16, false},
		{"W3", 16, true},
	} {
		b.Run(w.name, func(b *testing.B) {
			ls := make([]*zookeeper.Locker, w.workers)
			for i := range ls {
				ls[i] = newLocker(b, servers, 10*time.Second)
			}
			ctx := context.Background()
			// Warm up: sessions, directories.
			for i, l := range ls {
				lease, err := l.Acquire(ctx, benchName(w.name, i, w.shared))
				require.NoError(b, err)
				require.NoError(b, lease.Release(ctx))
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for i, l := range ls {
				wg.Go(func() {
					name := benchName(w.name, i, w.shared)
					for next.Add(1) <= int64(b.N) {
						lease, err := l.Acquire(ctx, name)
						if err != nil {
							b.Error(err)
							return
						}
						if err := lease.Release(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
		})
	}
}

func benchName(w string, i int, shared bool) string {
	if shared {
		return "bench-" + w
	}
	return fmt.Sprintf("bench-%s-%d", w, i)
}
