package main

import (
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/httplocker"
	"github.com/stretchr/testify/assert"

	"github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/lock"
)

// seedFlag fixes TestLockd_Nemesis's schedule; 0 picks one from the clock.
var seedFlag = flag.Int64("seed", 0, "nemesis seed (0: from the clock)")

// nemesisTTL is the clients' session TTL in TestLockd_Nemesis.
const nemesisTTL = 2 * time.Second

// TestLockd_Nemesis runs three lockd processes with six HTTP clients, as
// clients in another language would use lockd: each has a client session
// renewed at random replicas, and loops acquire (at a random replica),
// fenced write, refresh, fenced write, release (each at a random replica,
// by lease key), every call recorded. Meanwhile a seeded nemesis, every
// 1-2 s, SIGKILLs the leader or a follower and restarts it on its -data,
// SIGSTOPs a process for longer than the session TTL and SIGCONTs it (a
// real pause, timers and all), or crashes a client that holds a lease
// (it stops renewing, never releases, and starts over with a new
// session); each at least once per run. The history is checked like the
// in-process scenarios' (internal/history: linearizability per name,
// tokens, the fence): no duplicate token, no lease confirmed held after
// another was granted. Liveness: every client acquires again within 30 s
// once the nemesis stops (a crashed client's leases passed on within its
// TTL; restarted replicas serve refreshes and releases by key).
//
//	go test -run TestLockd_Nemesis -v ./examples/lockd               # ~20 s
//	QUORUMLOCK_SOAK=5m go test -run TestLockd_Nemesis -timeout 0 ./examples/lockd
//	go test -run TestLockd_Nemesis -seed=N ./examples/lockd          # replay a schedule
func TestLockd_Nemesis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes (-short)")
	}
	bin := buildLockd(t)
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (rerun with -run '^TestLockd_Nemesis$' -seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	soak := nemesisSoak(t)

	c := startProcCluster(t, bin, 3)
	rec := history.NewRecorder()
	fence := history.NewFence(rec, history.FenceConfig{})
	const workers = 6
	hw := &httpWorkload{rec: rec, fence: fence, acquired: make(chan int, 1024), holding: make([]atomic.Bool, workers)}
	replicas := make([]httplocker.Replica, len(c.procs))
	for i, p := range c.procs {
		replicas[i] = httplocker.Replica{Base: "http://" + p.http, Client: &http.Client{Timeout: 20 * time.Second}}
		defer replicas[i].Client.CloseIdleConnections()
	}
	for range workers {
		hw.lockers = append(hw.lockers, httplocker.New(replicas, nemesisTTL))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { hw.worker(ctx, w, []string{"a", "b"}[w%2]) })
	}
	stop := sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		for _, l := range hw.lockers {
			_ = l.Close()
		}
	})
	defer stop()

	n := runNemesis(t, c, bin, hw, rng, soak)
	hw.checkLiveness(t, workers)
	stop()
	t.Logf("kills %d, pauses %d, client crashes %d; grants %d; fenced writes accepted %d, rejected %d (stale tokens)",
		n.kills, n.pauses, n.crashes, hw.grants.Load(), hw.accepted.Load(), hw.rejected.Load())
	assert.NotZero(t, hw.accepted.Load())
	requireHTTPHistory(t, rec)
}

// nemesisSoak is how long TestLockd_Nemesis's nemesis runs: 10 s, or
// QUORUMLOCK_SOAK.
func nemesisSoak(t *testing.T) time.Duration {
	soak := 10 * time.Second
	if s := os.Getenv("QUORUMLOCK_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("QUORUMLOCK_SOAK: %v", err)
		}
		soak = d
	}
	return soak
}

// nemesisCounts counts what runNemesis did.
type nemesisCounts struct{ kills, pauses, crashes int }

// runNemesis, every 1-2 s, SIGKILLs the leader or a follower and restarts
// it, SIGSTOPs a process for longer than the session TTL and SIGCONTs it,
// or crashes a client that holds a lease. It runs for soak, and on (up
// to 30 s more) until it has done each at least once.
func runNemesis(t *testing.T, c *procCluster, bin string, hw *httpWorkload, rng *rand.Rand, soak time.Duration) nemesisCounts {
	var n nemesisCounts
	end := time.Now().Add(soak)
	for time.Now().Before(end) || (n.kills == 0 || n.pauses == 0 || n.crashes == 0) && time.Now().Before(end.Add(30*time.Second)) {
		time.Sleep(time.Duration(1000+rng.IntN(1000)) * time.Millisecond) // the nemesis's pace, not a wait for state
		switch act := rng.IntN(4); {
		case act == 0 || n.pauses == 0 && n.kills > 0:
			p := c.procs[rng.IntN(len(c.procs))]
			if !p.running() {
				continue
			}
			d := nemesisTTL + time.Duration(500+rng.IntN(1000))*time.Millisecond
			t.Logf("SIGSTOP %s for %v", p.id, d)
			if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatalf("SIGSTOP %s: %v", p.id, err)
			}
			time.Sleep(d) // how long the process stays stopped
			if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatalf("SIGCONT %s: %v", p.id, err)
			}
			n.pauses++
		case act == 1 || n.crashes == 0 && n.kills > 0:
			if w := hw.holder(rng); w >= 0 {
				t.Logf("client %d crashes holding a lease", w)
				hw.lockers[w].Crash()
				n.crashes++
			}
		default:
			p := c.leader()
			if act == 3 {
				p = c.others(p)[rng.IntN(len(c.others(p)))]
			}
			t.Logf("SIGKILL %s", p.id)
			p.kill()
			n.kills++
			time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond) // how long it stays dead
			p.start(t, bin)
		}
	}
	return n
}

// checkLiveness reports an error unless every client acquires again
// within 30 s once the nemesis stops.
func (hw *httpWorkload) checkLiveness(t *testing.T, workers int) {
	hw.armed.Store(true)
	live := map[int]bool{}
	deadline := time.After(30 * time.Second)
	for len(live) < workers {
		select {
		case w := <-hw.acquired:
			live[w] = true
		case <-deadline:
			t.Errorf("liveness: only clients %v acquired within 30 s after the nemesis stopped", live)
			return
		}
	}
}

// requireHTTPHistory checks the recorded history. The failure files
// outlive the test; kept (and printed) only on failure.
func requireHTTPHistory(t *testing.T, rec *history.Recorder) {
	dir, err := os.MkdirTemp("", "quorumlock-history-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("history files kept in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	history.Require(t, rec.History(), history.Options{Dir: dir, Timeout: 30 * time.Second})
}

// httpWorkload is the clients' side of TestLockd_Nemesis.
type httpWorkload struct {
	rec                *history.Recorder
	fence              *history.Fence
	lockers            []*httplocker.Locker
	holding            []atomic.Bool // per client: holds a lease now
	accepted, rejected atomic.Int64
	grants             atomic.Int64
	armed              atomic.Bool
	acquired           chan int // once armed: clients that acquired
}

// holder picks a client that holds a lease, or -1.
func (hw *httpWorkload) holder(rng *rand.Rand) int {
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		var held []int
		for w := range hw.holding {
			if hw.holding[w].Load() {
				held = append(held, w)
			}
		}
		if len(held) > 0 {
			return held[rng.IntN(len(held))]
		}
		time.Sleep(5 * time.Millisecond) // poll, bounded by the loop's deadline
	}
	return -1
}

func (hw *httpWorkload) write(ctx context.Context, w int, name string, token uint64) {
	switch err := hw.fence.Write(ctx, w, name, token); {
	case err == nil:
		hw.accepted.Add(1)
	case errors.Is(err, history.ErrStaleToken):
		hw.rejected.Add(1)
	}
}

// worker loops acquire -> write -> refresh -> write -> release until ctx
// ends. Calls at a dead or stopped process fail or time out; the worker
// retries. A client crashed while it held skips its release.
func (hw *httpWorkload) worker(ctx context.Context, w int, name string) {
	l := hw.lockers[w]
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, 4*time.Second)
		lease, err := hw.rec.Acquire(actx, w, l, name)
		cancel()
		if err != nil {
			sleep(ctx, 20*time.Millisecond)
			continue
		}
		hw.grants.Add(1)
		if hw.armed.Load() {
			select {
			case hw.acquired <- w:
			default:
			}
		}
		session := l.CurrentSession()
		hw.holding[w].Store(true)
		hw.write(ctx, w, name, lease.Token())
		rctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		if hw.rec.Refresh(rctx, w, lease) == nil {
			hw.write(ctx, w, name, lease.Token())
		}
		hw.holding[w].Store(false)
		if l.CurrentSession() == session { // not crashed meanwhile
			if err := hw.rec.Release(rctx, w, lease); err != nil && !errors.Is(err, lock.ErrNotHeld) {
				// Unknown outcome: the lease may still be held. An acquire
				// with the same session would answer that same lease
				// again (acquire is idempotent per session), which the
				// history would take for a second grant of its token:
				// give the session up instead, as a client unsure of its
				// state should; its leases pass on when it expires.
				l.Crash()
			}
		}
		cancel()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
