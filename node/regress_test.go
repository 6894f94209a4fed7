package node

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/lock"
)

// Regression tests for bugs the fault scenarios in cluster_test found.

// dumpGoroutines logs every goroutine's stack: a hang found in CI must
// explain itself.
func dumpGoroutines(t *testing.T) {
	t.Helper()
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	t.Logf("goroutines:\n%s", b.String())
}

// TestNode_AbortUnderLoad: Abort while many callers have commands in
// flight. Every caller must return (hashicorp/raft's BatchApplyCh left
// futures that were still in the buffered apply channel at Shutdown
// unanswered forever, and Abort waited for a forwarded command's handler
// stuck on one).
func TestNode_AbortUnderLoad(t *testing.T) {
	for round := range 3 {
		n, err := New(Config{DataDir: t.TempDir()})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		started := make(chan struct{}, 64)
		for w := range 64 {
			wg.Go(func() {
				name := fmt.Sprintf("w%d", w)
				for i := 0; ctx.Err() == nil; i++ {
					l, err := n.Acquire(ctx, name)
					if err != nil {
						return
					}
					if i == 0 {
						started <- struct{}{}
					}
					if l.Release(ctx) != nil {
						return
					}
				}
			})
		}
		for range 64 {
			<-started
		}
		aborted := make(chan error, 1)
		go func() { aborted <- n.Abort() }()
		returned := make(chan struct{})
		go func() { wg.Wait(); close(returned) }()
		select {
		case err := <-aborted:
			assert.NoError(t, err, "round %d: Abort", round)
		case <-time.After(30 * time.Second):
			cancel()
			dumpGoroutines(t)
			t.Fatalf("round %d: Abort did not return within 30 s under load", round)
		}
		select {
		case <-returned:
		case <-time.After(30 * time.Second):
			cancel()
			dumpGoroutines(t)
			t.Fatalf("round %d: callers still blocked 30 s after Abort", round)
		}
		cancel()
	}
}

// TestClient_WaiterAnswersNeverBlock: answering a waiter that already has
// an answer must not block (a queued Acquire's reconcile, holding the
// bridge's lock, blocked on a full channel and froze the node's FSM).
func TestClient_WaiterAnswersNeverBlock(t *testing.T) {
	n := newNode(t, Config{})
	c, err := n.newClient(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	answered := func() *waiter {
		w := &waiter{name: "x", claim: 1, ch: make(chan *lease, 1), errc: make(chan error, 1)}
		w.errc <- errors.New("first answer")
		c.mu.Lock()
		c.waiters[99] = w
		c.mu.Unlock()
		return w
	}
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"withdrawn event", func() { c.handle(fsm.Event{Kind: fsm.EventWithdrawn, Seq: 99, Reason: fsm.ReasonExpired}) }},
		{"session lost", c.sessionLost},
		{"closed", func() { c.markClosed() }},
	} {
		w := answered()
		done := make(chan struct{})
		go func() { tc.fn(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: blocked answering a waiter that had an answer", tc.name)
		}
		assert.EqualError(t, <-w.errc, "first answer", tc.name)
	}
}

// TestClient_RenewalNeverOutlastsDeadline: a keep-alive that gets no answer
// must give up by the holder's deadline, so that the deadline ends the
// session leases on time (I3). Renewals used to run with a fixed TTL/3
// timeout: one started just before the deadline kept the keep-alive loop
// busy past it, and the holder went on trusting a lease the leader could
// already have expired (found by cluster_test's TestRandomPartitions as a
// lease reported held 2.6 s after its grant, TTL 2 s).
func TestClient_RenewalNeverOutlastsDeadline(t *testing.T) {
	const ttl = time.Second
	ctx := testCtx(t)
	n := newNode(t, Config{SessionTTL: ttl})
	c, err := n.newClient(ctx)
	require.NoError(t, err)
	defer c.abandon()
	l, err := c.Acquire(ctx, "x")
	require.NoError(t, err)

	// The stub passes the first renewal to the store, so the store really
	// renews the session then, and never answers after that: each call
	// blocks for the whole timeout it is given. Only the calls for that
	// session are checked; once its deadline passes the client opens a new
	// session, whose renewals are not this test's business.
	type call struct {
		at      time.Time
		timeout time.Duration
	}
	var mu sync.Mutex
	var calls []call
	var acked time.Time
	var ackedSession uint64
	c.mu.Lock()
	c.renew = func(session uint64, timeout time.Duration) bool {
		mu.Lock()
		first := acked.IsZero()
		mu.Unlock()
		if first {
			sent := time.Now()
			if !n.renewSession(session, timeout) {
				return false
			}
			mu.Lock()
			acked, ackedSession = sent, session
			mu.Unlock()
			return true
		}
		now := time.Now()
		mu.Lock()
		if session == ackedSession {
			calls = append(calls, call{now, timeout})
		}
		mu.Unlock()
		time.Sleep(timeout)
		return false
	}
	c.mu.Unlock()

	<-l.Done()
	mu.Lock()
	defer mu.Unlock()
	require.False(t, acked.IsZero(), "no renewal was acknowledged")
	// The keep-alive loop takes its send time just before calling the
	// stub, so its deadline is at most this one.
	deadline := acked.Add(ttl - driftMargin(ttl))
	// Ticks every TTL/3 after the acknowledgement: the second unanswered
	// renewal starts less than TTL/3 before the deadline, the case the old
	// fixed timeout got wrong.
	require.GreaterOrEqual(t, len(calls), 2, "fewer than two unanswered renewals before the deadline")
	for _, cl := range calls {
		assert.False(t, cl.at.Add(cl.timeout).After(deadline.Add(time.Millisecond)),
			"a renewal at %v with timeout %v outlasts the deadline %v", cl.at.Sub(acked), cl.timeout, deadline.Sub(acked))
	}
	assert.ErrorIs(t, l.Err(), lock.ErrLost)
}
