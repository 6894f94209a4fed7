package clustertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/lock"
)

// membershipWorkers is the number of TestMembershipUnderLoad's workers.
const membershipWorkers = 4

// TestMembershipUnderLoad: four workers loop acquire -> fenced write ->
// release on two names, moving between live nodes, while a fourth node
// joins and then a follower is removed and killed. Each change waits until
// every worker has been granted since the one before, so it happens under
// load. Every call and fenced write is recorded and the history checked
// (history.Require), no fenced write may be rejected, and the only errors
// allowed are Acquire timeouts (retried) and the killed node's clients
// closing. Leadership transfer under load (graceful Close of the leader)
// is TestLeaderTransferUnderLoad.
func TestMembershipUnderLoad(t *testing.T) {
	t.Parallel()
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (rerun with -seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	began := time.Now()
	c := newCluster(t, 3)
	defer func() { t.Logf("test body took %v (cluster Close follows)", time.Since(began).Round(time.Millisecond)) }()

	ml := &membershipLoad{c: c, rec: history.NewRecorder()}
	ml.fence = history.NewFence(ml.rec, history.FenceConfig{})
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w := range membershipWorkers {
		wrng := rand.New(rand.NewPCG(uint64(seed), uint64(w+1)))
		wg.Go(func() { ml.worker(ctx, w, []string{"a", "b"}[w%2], wrng) })
	}
	defer func() {
		stop()
		wg.Wait()
	}()

	// Membership changes run on the test goroutine (they may Fatal).
	ml.waitGrants(t, began, "every worker acquires before the join")
	joined := joinUnderLoad(t, c, rng.IntN(3))
	ml.waitGrants(t, joined, "every worker acquires after the join")
	reconfigured := removeUnderLoad(ctx, t, c, rng)
	ml.waitGrants(t, reconfigured, "every worker acquires after the reconfiguration")
	// Not a wait for state: the workers run on the final configuration a
	// little longer before they stop.
	sleep(ctx, 500*time.Millisecond)
	stop()
	wg.Wait()

	ml.emu.Lock()
	defer ml.emu.Unlock()
	t.Logf("fenced writes accepted %d rejected %d, Acquire timeouts retried %d", ml.accepted.Load(), ml.rejected.Load(), ml.timeouts.Load())
	assert.Zero(t, ml.rejected.Load(), "fenced writes rejected")
	assert.Empty(t, slices.Compact(ml.unexpected), "worker errors other than retried timeouts")
	assert.NotZero(t, ml.accepted.Load())
	requireHistory(t, ml.rec.History())
}

// joinUnderLoad adds a node joining through node via, waits until every
// node sees four members and returns when that was.
func joinUnderLoad(t *testing.T, c *cluster, via int) time.Time {
	t.Helper()
	start := time.Now()
	j, err := c.Add(via)
	require.NoError(t, err)
	t.Logf("n%d joined in %v", j+1, time.Since(start).Round(time.Millisecond))
	c.WaitMembers(4)
	t.Logf("join -> all see 4 members: %v", time.Since(start).Round(time.Millisecond))
	return time.Now()
}

// removeUnderLoad removes a random follower, kills it, waits until every
// node sees three members, checks it is gone and returns when that was.
func removeUnderLoad(ctx context.Context, t *testing.T, c *cluster, rng *rand.Rand) time.Time {
	t.Helper()
	li := c.Leader()
	var followers []int
	for _, i := range c.Live() {
		if i != li {
			followers = append(followers, i)
		}
	}
	f := followers[rng.IntN(len(followers))]
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	require.NoError(t, c.Node(li).RemoveServer(rctx, fmt.Sprintf("n%d", f+1)))
	cancel()
	t.Logf("removed n%d (leader n%d) in %v", f+1, li+1, time.Since(start).Round(time.Millisecond))
	c.Kill(f)
	c.WaitMembers(3)
	reconfigured := time.Now()
	t.Logf("remove -> all see 3 members: %v", reconfigured.Sub(start).Round(time.Millisecond))
	members, err := c.Node(c.Leader()).Members()
	require.NoError(t, err)
	for _, m := range members {
		assert.NotEqual(t, fmt.Sprintf("n%d", f+1), m.ID)
	}
	return reconfigured
}

// membershipLoad is TestMembershipUnderLoad's recorded workers.
type membershipLoad struct {
	c                            *cluster
	rec                          *history.Recorder
	fence                        *history.Fence
	accepted, rejected, timeouts atomic.Int64
	lastGrant                    [membershipWorkers]atomic.Int64 // UnixNano of each worker's last grant

	emu        sync.Mutex
	unexpected []string
}

func (ml *membershipLoad) fail(format string, args ...any) {
	ml.emu.Lock()
	defer ml.emu.Unlock()
	ml.unexpected = append(ml.unexpected, fmt.Sprintf(format, args...))
}

// waitGrants waits up to 10 s until every worker has been granted a lease
// since since.
func (ml *membershipLoad) waitGrants(t *testing.T, since time.Time, msg string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for w := range membershipWorkers {
			if ml.lastGrant[w].Load() < since.UnixNano() {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, msg)
}

// worker runs worker w on name until ctx ends, moving between live nodes:
// a new Locker on the next one after a few operations.
func (ml *membershipLoad) worker(ctx context.Context, w int, name string, wrng *rand.Rand) {
	pick := w
	for ctx.Err() == nil {
		live := ml.c.Live()
		i := live[pick%len(live)]
		pick++
		nctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		l, err := ml.c.NewLocker(nctx, i)
		cancel()
		if err != nil {
			if ctx.Err() == nil && ml.c.Node(i) != nil && !errors.Is(err, context.DeadlineExceeded) {
				ml.fail("worker %d: NewLocker on n%d: %v", w, i+1, err)
			}
			sleep(ctx, 20*time.Millisecond) // back off before the next node
			continue
		}
		for range 5 + wrng.IntN(10) {
			if ctx.Err() != nil || !ml.iterate(ctx, w, i, l, name, wrng) {
				break
			}
		}
		_ = l.Close()
	}
}

// iterate is one acquire -> fenced write -> release of worker w on node
// i; it reports whether the worker may go on with l.
func (ml *membershipLoad) iterate(ctx context.Context, w, i int, l lock.Locker, name string, wrng *rand.Rand) bool {
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	lease, err := ml.rec.Acquire(actx, w, l, name)
	cancel()
	if err != nil {
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, context.DeadlineExceeded):
			ml.timeouts.Add(1)
			return true
		case ml.c.Node(i) == nil && (errors.Is(err, lock.ErrClosed) || errors.Is(err, lock.ErrLost)):
		default:
			ml.fail("worker %d: Acquire %q on n%d: %v", w, name, i+1, err)
		}
		return false
	}
	ml.lastGrant[w].Store(time.Now().UnixNano())
	if ml.rec.Observe(w, lease) {
		switch err := ml.fence.Write(ctx, w, name, lease.Token()); {
		case err == nil:
			ml.accepted.Add(1)
		case errors.Is(err, history.ErrStaleToken):
			ml.rejected.Add(1)
			ml.fail("worker %d: fenced write of %q token %d rejected", w, name, lease.Token())
		}
	}
	sleep(ctx, time.Duration(wrng.IntN(3))*time.Millisecond) // hold the lease a moment: the critical section
	ml.rec.Observe(w, lease)
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err = ml.rec.Release(rctx, w, lease)
	cancel()
	if err != nil && ctx.Err() == nil && ml.c.Node(i) != nil {
		ml.fail("worker %d: Release %q token %d on n%d: %v", w, name, lease.Token(), i+1, err)
	}
	return true
}
