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

	"github.com/stretchr/testify/assert"

	"github.com/quorumlock/quorumlock/internal/history"
)

// seedFlag fixes TestLockd_Nemesis's schedule; 0 picks one from the clock.
var seedFlag = flag.Int64("seed", 0, "nemesis seed (0: from the clock)")

// nemesisTTL is the processes' -session-ttl in TestLockd_Nemesis.
const nemesisTTL = 2 * time.Second

// TestLockd_Nemesis runs three lockd processes with six HTTP clients
// contending for two names (acquire, fenced write, refresh, fenced write,
// release; every call recorded) while a seeded nemesis, every 1-2 s,
// either SIGKILLs the leader and restarts it on its -data, or SIGSTOPs the
// process through which some client holds a lease for longer than the
// session TTL and then SIGCONTs it — a real process pause, timers and all
// (each at least once per run).
// The history is checked like the in-process scenarios' (internal/history:
// linearizability per name, tokens, the fence). A client whose process was
// stopped may write with its old token after the resume: the fence must
// reject it if the name moved on, and a Refresh the resumed process
// answers OK for a lease granted elsewhere meanwhile is a violation (I3).
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

	c := startProcCluster(t, bin, 3, "-session-ttl", nemesisTTL.String())
	rec := history.NewRecorder()
	fence := history.NewFence(rec, history.FenceConfig{})
	hw := &httpWorkload{rec: rec, fence: fence, holding: make([]atomic.Int32, len(c.procs)), acquired: make(chan int, 1024)}
	lockers := make([]*httpLocker, len(c.procs))
	for i, p := range c.procs {
		lockers[i] = &httpLocker{base: "http://" + p.http, client: &http.Client{Timeout: 20 * time.Second}}
		defer lockers[i].client.CloseIdleConnections()
	}
	const workers = 6
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { hw.worker(ctx, w, w%len(c.procs), lockers[w%len(c.procs)], []string{"a", "b"}[w%2]) })
	}
	stop := sync.OnceFunc(func() { cancel(); wg.Wait() })
	defer stop()

	kills, pauses := runNemesis(t, c, bin, hw, rng, soak)
	hw.checkLiveness(t, workers)
	stop()
	t.Logf("kills %d, pauses %d; fenced writes accepted %d, rejected %d (stale tokens of paused holders)",
		kills, pauses, hw.accepted.Load(), hw.rejected.Load())
	assert.NotZero(t, hw.accepted.Load())
	if pauses == 0 {
		t.Log("this schedule paused no holder (no client held a lease whenever the nemesis looked)")
	}
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

// runNemesis, every 1-2 s, SIGSTOPs a process through which a client holds
// a lease for longer than the session TTL and SIGCONTs it, or SIGKILLs the
// leader and restarts it. It runs for soak, and on (up to 30 s more) until
// it has both killed and paused at least once.
func runNemesis(t *testing.T, c *procCluster, bin string, hw *httpWorkload, rng *rand.Rand, soak time.Duration) (kills, pauses int) {
	end := time.Now().Add(soak)
	for time.Now().Before(end) || (kills == 0 || pauses == 0) && time.Now().Before(end.Add(30*time.Second)) {
		time.Sleep(time.Duration(1000+rng.IntN(1000)) * time.Millisecond) // the nemesis's pace, not a wait for state
		if (pauses == 0 && kills > 0) || rng.IntN(2) == 0 {
			if i := hw.holder(rng); i >= 0 {
				p := c.procs[i]
				d := nemesisTTL + time.Duration(500+rng.IntN(1000))*time.Millisecond
				t.Logf("SIGSTOP %s (a client holds through it) for %v", p.id, d)
				if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
					t.Fatalf("SIGSTOP %s: %v", p.id, err)
				}
				time.Sleep(d) // how long the process stays stopped
				if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
					t.Fatalf("SIGCONT %s: %v", p.id, err)
				}
				pauses++
				continue
			}
		}
		p := c.leader()
		t.Logf("SIGKILL leader %s", p.id)
		p.kill()
		kills++
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond) // how long the leader stays dead
		p.start(t, bin)
	}
	return kills, pauses
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
	holding            []atomic.Int32 // per process: clients holding through it
	accepted, rejected atomic.Int64
	armed              atomic.Bool
	acquired           chan int // once armed: clients that acquired
}

// holder picks a process through which some client holds a lease, or -1.
func (hw *httpWorkload) holder(rng *rand.Rand) int {
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		var held []int
		for i := range hw.holding {
			if hw.holding[i].Load() > 0 {
				held = append(held, i)
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

// worker loops acquire -> write -> refresh -> write -> release through
// process i's API until ctx ends. A dead or stopped process makes its calls
// fail or time out; the worker retries.
func (hw *httpWorkload) worker(ctx context.Context, w, i int, l *httpLocker, name string) {
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, 4*time.Second)
		lease, err := hw.rec.Acquire(actx, w, l, name)
		cancel()
		if err != nil {
			sleep(ctx, 20*time.Millisecond)
			continue
		}
		if hw.armed.Load() {
			select {
			case hw.acquired <- w:
			default:
			}
		}
		hw.holding[i].Add(1)
		hw.write(ctx, w, name, lease.Token())
		rctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		if hw.rec.Refresh(rctx, w, lease) == nil {
			hw.write(ctx, w, name, lease.Token())
		}
		_ = hw.rec.Release(rctx, w, lease)
		cancel()
		hw.holding[i].Add(-1)
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
