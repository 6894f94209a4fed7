package redis_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// BenchmarkRedis measures acquire+release per op against a real
// redis-server with appendfsync always (DESIGN.md §6 workloads): W1 one
// worker, W2 16 workers on their own names, W3 16 workers on one name
// (hand-offs through the FIFO queue). Each worker has its own Locker.
//
//	go test -run '^$' -bench BenchmarkRedis -benchtime 3s ./adapters/redis
func BenchmarkRedis(b *testing.B) {
	srv := testserver.StartRedis(b, testserver.RedisOptions{AppendFsyncAlways: true})
	benchWorkloads(b, redis.Config{Addr: srv.Addr()})
}

// BenchmarkRedlock: the same workloads in Redlock mode on three primaries,
// each with appendfsync always.
func BenchmarkRedlock(b *testing.B) {
	var addrs []string
	for range 3 {
		addrs = append(addrs, testserver.StartRedis(b, testserver.RedisOptions{AppendFsyncAlways: true}).Addr())
	}
	benchWorkloads(b, redis.Config{Addrs: addrs})
}

func benchWorkloads(b *testing.B, cfg redis.Config) {
	for _, w := range []struct {
		name     string
		workers  int
		sameName bool
	}{
		{"W1", 1, false},
		{"W2", 16, false},
		{"W3", 16, true},
	} {
		b.Run(w.name, func(b *testing.B) {
			lockers := make([]*redis.Locker, w.workers)
			for i := range lockers {
				l, err := redis.New(cfg)
				require.NoError(b, err)
				lockers[i] = l
			}
			defer func() {
				for _, l := range lockers {
					_ = l.Close()
				}
			}()
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			var failed atomic.Value
			b.ResetTimer()
			for i, l := range lockers {
				name := b.Name() + "-" + strconv.Itoa(i)
				if w.sameName {
					name = b.Name()
				}
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if err := acquireRelease(ctx, l, name); err != nil {
							failed.Store(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

func acquireRelease(ctx context.Context, l lock.Locker, name string) error {
	lease, err := l.Acquire(ctx, name)
	if err != nil {
		return err
	}
	return lease.Release(ctx)
}
