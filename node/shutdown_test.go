package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
