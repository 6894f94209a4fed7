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

// TestMembershipUnderLoad: four workers loop acquire -> fenced write ->
// release on two names, moving between live nodes, while a fourth node
// joins and then a follower is removed and killed. Every call and fenced
// write is recorded and the history checked (history.Require), no fenced
// write may be rejected, and the only errors allowed are Acquire timeouts
// (retried) and the killed node's clients closing. Leadership transfer under load (graceful Close of the
// leader) is TestLeaderTransferUnderLoad.
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

	const workers = 4
	names := []string{"a", "b"}
	rec := history.NewRecorder()
	fence := history.NewFence(rec, history.FenceConfig{})
	var accepted, rejected atomic.Int64
	var (
		emu        sync.Mutex
		unexpected []string
		timeouts   atomic.Int64
		lastGrant  [workers]atomic.Int64 // UnixNano of each worker's last grant
	)
	fail := func(format string, args ...any) {
		emu.Lock()
		defer emu.Unlock()
		unexpected = append(unexpected, fmt.Sprintf(format, args...))
	}

	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w := range workers {
		wrng := rand.New(rand.NewPCG(uint64(seed), uint64(w+1)))
		wg.Go(func() {
			name := names[w%len(names)]
			pick := w
			for ctx.Err() == nil {
				live := c.Live()
				i := live[pick%len(live)]
				pick++
				nctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				l, err := c.NewLocker(nctx, i)
				cancel()
				if err != nil {
					if ctx.Err() == nil && c.Node(i) != nil && !errors.Is(err, context.DeadlineExceeded) {
						fail("worker %d: NewLocker on n%d: %v", w, i+1, err)
					}
					sleep(ctx, 20*time.Millisecond)
					continue
				}
				// A few operations on this node, then move on.
				for range 5 + wrng.IntN(10) {
					if ctx.Err() != nil {
						break
					}
					actx, cancel := context.WithTimeout(ctx, 3*time.Second)
					lease, err := rec.Acquire(actx, w, l, name)
					cancel()
					if err != nil {
						switch {
						case ctx.Err() != nil:
						case errors.Is(err, context.DeadlineExceeded):
							timeouts.Add(1)
							continue
						case c.Node(i) == nil && (errors.Is(err, lock.ErrClosed) || errors.Is(err, lock.ErrLost)):
						default:
							fail("worker %d: Acquire %q on n%d: %v", w, name, i+1, err)
						}
						break
					}
					lastGrant[w].Store(time.Now().UnixNano())
					if rec.Observe(w, lease) {
						switch err := fence.Write(ctx, w, name, lease.Token()); {
						case err == nil:
							accepted.Add(1)
						case errors.Is(err, history.ErrStaleToken):
							rejected.Add(1)
							fail("worker %d: fenced write of %q token %d rejected", w, name, lease.Token())
						}
					}
					time.Sleep(time.Duration(wrng.IntN(3)) * time.Millisecond)
					rec.Observe(w, lease)
					rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					err = rec.Release(rctx, w, lease)
					cancel()
					if err != nil && ctx.Err() == nil && c.Node(i) != nil {
						fail("worker %d: Release %q token %d on n%d: %v", w, name, lease.Token(), i+1, err)
					}
				}
				_ = l.Close()
			}
		})
	}
	defer func() {
		stop()
		wg.Wait()
	}()

	// Membership changes run on the test goroutine (they may Fatal).
	time.Sleep(time.Second)
	start := time.Now()
	j, err := c.Add(rng.IntN(3))
	require.NoError(t, err)
	t.Logf("n%d joined in %v", j+1, time.Since(start).Round(time.Millisecond))
	c.WaitMembers(4)
	t.Logf("join -> all see 4 members: %v", time.Since(start).Round(time.Millisecond))

	time.Sleep(time.Second)
	li := c.Leader()
	var followers []int
	for _, i := range c.Live() {
		if i != li {
			followers = append(followers, i)
		}
	}
	f := followers[rng.IntN(len(followers))]
	start = time.Now()
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

	// Every worker must get a grant after the last reconfiguration.
	require.Eventually(t, func() bool {
		for w := range workers {
			if lastGrant[w].Load() < reconfigured.UnixNano() {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "every worker acquires after the reconfiguration")
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()

	emu.Lock()
	defer emu.Unlock()
	t.Logf("fenced writes accepted %d rejected %d, Acquire timeouts retried %d", accepted.Load(), rejected.Load(), timeouts.Load())
	assert.Zero(t, rejected.Load(), "fenced writes rejected")
	assert.Empty(t, slices.Compact(unexpected), "worker errors other than retried timeouts")
	assert.NotZero(t, accepted.Load())
	requireHistory(t, rec.History())
}
