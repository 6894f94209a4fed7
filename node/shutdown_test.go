package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

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

// TestNode_AbortDuringNewLocker: a node stopping while a NewLocker is still
// opening its session must not wait for that open. The client is
// registered with the node before its open-session command commits, so
// closeClients abandoned it and waited for a keep-alive goroutine that is
// started only after the open succeeds: Abort hung for as long as the open
// kept retrying (found by cluster_test's TestMembershipUnderLoad, where a
// worker opened a Locker on a node the nemesis was killing).
func TestNode_AbortDuringNewLocker(t *testing.T) {
	tc := newTestCluster(t, 3, false)
	// Only one node left: no quorum, so the open cannot commit.
	n := tc.nodes[2]
	tc.nodes[2] = nil // stopped below; a hung Abort must not hang the cleanup too
	for _, i := range []int{0, 1} {
		require.NoError(t, tc.nodes[i].Abort())
		tc.nodes[i] = nil
	}
	sessions := func() int {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.clients)
	}
	before := sessions()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opened := make(chan error, 1)
	go func() {
		l, err := n.NewLocker(ctx)
		if err == nil {
			_ = l.Close()
		}
		opened <- err
	}()
	require.Eventually(t, func() bool { return sessions() > before }, 20*time.Second, time.Millisecond,
		"the new client registers its session before the open commits")

	aborted := make(chan error, 1)
	go func() { aborted <- n.Abort() }()
	select {
	case err := <-aborted:
		assert.NoError(t, err)
	case <-time.After(30 * time.Second):
		dumpGoroutines(t)
		t.Fatal("Abort waited for a NewLocker whose session could not open")
	}
	select {
	case err := <-opened:
		assert.ErrorIs(t, err, lock.ErrClosed, "NewLocker on a node that stopped")
	case <-time.After(30 * time.Second):
		t.Fatal("NewLocker still blocked 30 s after Abort")
	}
}
