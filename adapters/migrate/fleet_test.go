package migrate_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/migrate"
	"github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/lock"
)

// The mixed-fleet tests (issue 15): replicas ("workers") take and release
// shared names through the Locker of their runbook step while the fleet
// rolls from one step to the next under load, one replica at a time, and
// back again. Every call goes through the history recorder and every grant
// writes to a fenced resource; the history checker then requires mutual
// exclusion and tokens that increase across every step.

// kind is the Locker a replica runs: the old code (from alone), Dual, or
// the new code (to alone).
type kind int

const (
	oldCode kind = iota
	dualCode
	newCode
)

func (k kind) String() string { return [...]string{"old", "dual", "new"}[k] }

// fleetWorkers and fleetNames: enough replicas that every step has
// neighbours of both kinds at once, few enough names that they contend.
const (
	fleetWorkers = 4
	fleetNames   = 2
	// opsPerTurn: each replica completes this many calls between two
	// deploys, so that every mix of kinds sees load.
	opsPerTurn = 3
)

// worker is one replica: its Lockers of every kind, opened up front, and
// the kind it runs now.
type worker struct {
	id      int
	lockers [3]lock.Locker
	kind    atomic.Int32
	ops     atomic.Int64 // calls completed (any outcome)
	grants  [3]atomic.Int64
}

// fleet is a running mixed fleet.
type fleet struct {
	rec     *history.Recorder
	fence   *history.Fence
	workers []*worker
}

// startFleet opens every replica's Lockers on from and to, in kind start,
// and runs them until ctx ends; wait returns once they have stopped.
func startFleet(ctx context.Context, t *testing.T, from, to store, start kind) (*fleet, func()) {
	t.Helper()
	f := &fleet{rec: history.NewRecorder()}
	f.fence = history.NewFence(f.rec, history.FenceConfig{})
	for i := range fleetWorkers {
		w := &worker{id: i}
		w.lockers[oldCode] = from.open(t)
		w.lockers[newCode] = to.open(t)
		dual, err := migrate.New(from.open(t), to.open(t), migrate.Config{Phase: migrate.Dual})
		require.NoError(t, err)
		t.Cleanup(func() { _ = dual.Close() })
		w.lockers[dualCode] = dual
		w.kind.Store(int32(start))
		f.workers = append(f.workers, w)
	}
	var wg sync.WaitGroup
	for _, w := range f.workers {
		wg.Go(func() { f.run(ctx, w) })
	}
	return f, wg.Wait
}

// run is one replica's loop: acquire a name, write under it, release it.
func (f *fleet) run(ctx context.Context, w *worker) {
	for i := 0; ctx.Err() == nil; i++ {
		k := kind(w.kind.Load())
		name := fmt.Sprintf("fleet-%d", (w.id+i)%fleetNames)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		lease, err := f.rec.Acquire(cctx, w.id, w.lockers[k], name)
		if err == nil {
			w.grants[k].Add(1)
			_ = f.fence.Write(cctx, w.id, name, lease.Token())
			_ = f.rec.Release(cctx, w.id, lease)
		}
		cancel()
		w.ops.Add(1)
	}
}

// deploy moves the replicas one at a time to kind k, letting every replica
// complete opsPerTurn calls after each move.
func (f *fleet) deploy(t *testing.T, k kind) {
	t.Helper()
	for _, w := range f.workers {
		w.kind.Store(int32(k))
		f.settle(t)
	}
}

// settle waits until every replica has completed opsPerTurn more calls.
func (f *fleet) settle(t *testing.T) {
	t.Helper()
	base := make([]int64, len(f.workers))
	for i, w := range f.workers {
		base[i] = w.ops.Load()
	}
	eventually(t, 2*time.Minute, "every replica completes its calls", func() bool {
		for i, w := range f.workers {
			if w.ops.Load() < base[i]+opsPerTurn {
				return false
			}
		}
		return true
	})
}

// grants sums the grants made through Lockers of kind k.
func (f *fleet) grants(k kind) int64 {
	var n int64
	for _, w := range f.workers {
		n += w.grants[k].Load()
	}
	return n
}

// forward is the runbook; forwardAndBack adds the rollback.
var (
	forward        = []kind{dualCode, newCode}
	forwardAndBack = []kind{dualCode, newCode, dualCode, oldCode}
)

// migrateFleet starts a fleet on the old code, deploys the kinds of steps
// in turn under load, and checks the history.
func migrateFleet(t *testing.T, from, to store, steps []kind) {
	ctx, cancel := context.WithCancel(context.Background())
	f, wait := startFleet(ctx, t, from, to, oldCode)
	f.settle(t)
	for _, k := range steps {
		f.deploy(t, k)
	}
	cancel()
	wait()
	for _, k := range []kind{oldCode, dualCode, newCode} {
		assert.Positive(t, f.grants(k), "grants through %v Lockers", k)
	}
	h := f.rec.History()
	history.Require(t, h, history.Options{})
	t.Logf("%s → %s: %d operations; grants: old %d, dual %d, new %d", from.name, to.name, len(h),
		f.grants(oldCode), f.grants(dualCode), f.grants(newCode))
}

func TestFleet_RedisToEmbedded(t *testing.T) {
	migrateFleet(t, redisStore(t), embeddedStore(t, 3), forwardAndBack)
}

// TestFleet_ZooKeeperToEmbedded moves forward only: rolling back to
// ZooKeeper keeps exclusion, but its tokens stay below the last ToOnly
// ones until its zxid passes them (DESIGN.md).
func TestFleet_ZooKeeperToEmbedded(t *testing.T) {
	migrateFleet(t, zkStore(t), embeddedStore(t, 3), forward)
}

func TestFleet_EmbeddedToRedis(t *testing.T) {
	migrateFleet(t, embeddedStore(t, 3), redisStore(t), forwardAndBack)
}

// TestFleet_SkippedPhaseOverlaps shows what the runbook prevents, and that
// the checker sees it: a replica on the old code (from alone) and one on
// the new code (to alone) share no store, so both are granted one name at
// once, and the history of their calls is not linearizable.
func TestFleet_SkippedPhaseOverlaps(t *testing.T) {
	from, to := redisStore(t), embeddedStore(t, 3)
	oldL, newL := from.open(t), to.open(t)
	rec := history.NewRecorder()
	fence := history.NewFence(rec, history.FenceConfig{})
	ctx := ctxFor(t, 30*time.Second)
	const name = "skipped"

	first, err := rec.Acquire(ctx, 0, oldL, name)
	require.NoError(t, err)
	second, err := rec.TryAcquire(ctx, 1, newL, name)
	require.NoError(t, err, "the new code is granted the name the old code holds: the stores share nothing")
	_ = fence.Write(ctx, 0, name, first.Token())
	_ = fence.Write(ctx, 1, name, second.Token())
	require.NoError(t, rec.Release(ctx, 0, first))
	require.NoError(t, rec.Release(ctx, 1, second))

	res := history.Check(rec.History(), history.Options{Dir: t.TempDir()})
	require.False(t, res.OK(), "the checker must see two holders of one name")
	assert.True(t, res.Has(history.Linearizability), "reported as a linearizability violation: %s", res)
}
