package node

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// benchStores are the stores the benchmarks compare: in memory, and a
// DataDir in each log format.
var benchStores = []struct {
	name    string
	durable bool
	format  LogStore
}{{"mem", false, LogStoreAuto}, {"disk", true, LogStoreLog}, {"bolt", true, LogStoreBolt}}

// benchWorkloads are lockbench's: W1 one worker, W2 16 workers on their
// own names, W3 16 workers on one name.
var benchWorkloads = []struct {
	name    string
	workers int
	shared  bool
}{{"W1", 1, false}, {"W2", 16, false}, {"W3", 16, true}}

// BenchmarkNode measures acquire+release per op on one node, in memory and
// durable (disk: the log store, bolt: raft-boltdb): W1 one worker, W2 16
// workers on their own names, W3 16 workers on one name (every op a
// hand-off).
func BenchmarkNode(b *testing.B) {
	for _, st := range benchStores {
		for _, w := range benchWorkloads {
			b.Run(st.name+"/"+w.name, func(b *testing.B) {
				cfg := Config{LogStore: st.format}
				if st.durable {
					cfg.DataDir = b.TempDir()
				}
				n, err := New(cfg)
				require.NoError(b, err)
				defer func() { _ = n.Close() }()
				ctx := context.Background()
				lockers := make([]lock.Locker, w.workers)
				for i := range lockers {
					lockers[i], err = n.NewLocker(ctx)
					require.NoError(b, err)
				}
				runWorkers(b, lockers, w.shared)
			})
		}
	}
}

// BenchmarkCluster is BenchmarkNode on a durable 3-node cluster in one
// process (real TCP on loopback), workers spread over all nodes; the log
// store, then raft-boltdb.
func BenchmarkCluster(b *testing.B) {
	for _, st := range benchStores[1:] {
		for _, w := range benchWorkloads {
			b.Run(st.name+"/"+w.name, func(b *testing.B) {
				nodes := benchCluster(b, st.format)
				lockers := make([]lock.Locker, w.workers)
				for i := range lockers {
					var err error
					lockers[i], err = nodes[i%3].NewLocker(context.Background())
					require.NoError(b, err)
				}
				runWorkers(b, lockers, w.shared)
			})
		}
	}
}

// BenchmarkHandOffPlacement splits the 3-node hand-off (W3 on the log
// store) by where its workers lock: all through the leader, all through
// the followers, or spread over the three (BenchmarkCluster's W3). The
// difference between leader and followers is what a follower adds to
// each hand-off: forwarding the calls, and learning of the commit and
// applying it before its waiter hears of the grant.
func BenchmarkHandOffPlacement(b *testing.B) {
	w := benchWorkloads[2]
	for _, place := range []string{"leader", "followers", "spread"} {
		b.Run(place, func(b *testing.B) {
			nodes := benchCluster(b, LogStoreLog)
			leader := benchLeader(b, nodes)
			var on []*Node
			for i, n := range nodes {
				if place == "spread" || (place == "leader") == (i == leader) {
					on = append(on, n)
				}
			}
			lockers := make([]lock.Locker, w.workers)
			for i := range lockers {
				var err error
				lockers[i], err = on[i%len(on)].NewLocker(context.Background())
				require.NoError(b, err)
			}
			runWorkers(b, lockers, w.shared)
		})
	}
}

// BenchmarkOpPlacement is W1 (one worker, acquire+release) on a durable
// 3-node cluster through the leader or through a follower: what a
// follower adds to an op that waits for no one (forwarding both entries,
// and waiting to apply each before answering).
func BenchmarkOpPlacement(b *testing.B) {
	for _, place := range []string{"leader", "follower"} {
		b.Run(place, func(b *testing.B) {
			nodes := benchCluster(b, LogStoreLog)
			leader := benchLeader(b, nodes)
			on := nodes[leader]
			if place == "follower" {
				on = nodes[(leader+1)%len(nodes)]
			}
			l, err := on.NewLocker(context.Background())
			require.NoError(b, err)
			runWorkers(b, []lock.Locker{l}, false)
		})
	}
}

// benchLeader waits for the cluster's leader and returns its index.
func benchLeader(b *testing.B, nodes []*Node) int {
	leader := -1
	require.Eventually(b, func() bool {
		id, _ := nodes[0].Leader()
		for i, n := range nodes {
			if id != "" && n.Stats().ID == id {
				leader = i
			}
		}
		return leader >= 0
	}, 30*time.Second, 10*time.Millisecond)
	return leader
}

// benchCluster starts a durable 3-node cluster in this process (real TCP
// on loopback), founded by the first node; b's cleanup stops it.
func benchCluster(b *testing.B, format LogStore) []*Node {
	dirs := []string{b.TempDir(), b.TempDir(), b.TempDir()} // removed after the Abort below
	var nodes []*Node
	b.Cleanup(func() {
		for _, n := range nodes {
			_ = n.Abort()
		}
	})
	for i := range 3 {
		cfg := Config{ID: fmt.Sprintf("n%d", i+1), Addr: "127.0.0.1:0", DataDir: dirs[i], LogStore: format}
		if i == 0 {
			cfg.Peers = []Peer{{ID: cfg.ID}}
		} else {
			cfg.Join = nodes[0].Addr()
		}
		n, err := New(cfg)
		require.NoError(b, err)
		nodes = append(nodes, n)
	}
	return nodes
}

// runWorkers runs acquire+release loops, one worker per locker, each on its
// own name or all on one shared name.
func runWorkers(b *testing.B, lockers []lock.Locker, shared bool) {
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism((len(lockers) + 1) / 2) // 2 cores here; RunParallel multiplies by GOMAXPROCS
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)-1) % len(lockers)
		name := fmt.Sprintf("bench-%d", i)
		if shared {
			name = "bench-shared"
		}
		for pb.Next() {
			l, err := lockers[i].Acquire(ctx, name)
			if err != nil {
				b.Error(err)
				return
			}
			if err := l.Release(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
