package node

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
)

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
