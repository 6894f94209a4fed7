package node

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// TestClient_RequestWindow: a slow request pins the client's window, so
// newer requests wait instead of pushing the state machine's result cache
// past it (which would answer the slow one FORGOTTEN when it finally
// applies — seen under load before the window existed).
func TestClient_RequestWindow(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	c, err := n.newClient(ctx)
	require.NoError(t, err)
	pinned := fillWindow(t, c)

	got := make(chan *fsmpb.Request, 1)
	go func() {
		c.mu.Lock()
		r, err := c.nextRequest(ctx)
		c.mu.Unlock()
		assert.NoError(t, err)
		got <- r
	}()
	assert.Never(t, func() bool { return len(got) > 0 }, 100*time.Millisecond, 5*time.Millisecond,
		"a full window must block new requests")
	c.endRequest(pinned)
	r := <-got
	assert.Greater(t, r.AckedBelow, pinned)
	assert.Less(t, r.Seq-r.AckedBelow, uint64(maxWindow))
	c.endRequest(r.Seq)
}

// fillWindow fills c's request window behind one pinned request and
// returns the pinned seq.
func fillWindow(t *testing.T, c *client) uint64 {
	t.Helper()
	ctx := testCtx(t)
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.nextRequest(ctx)
	require.NoError(t, err)
	for range maxWindow - 1 {
		next, err := c.nextRequest(ctx)
		require.NoError(t, err)
		delete(c.inflight, next.Seq)
	}
	return r.Seq
}

// TestClient_FullWindowHonoursContext: a call that finds the request
// window full waits for it no longer than its ctx, and a Close lets it
// go (it waited on a condition variable that neither could wake).
func TestClient_FullWindowHonoursContext(t *testing.T) {
	n := newNode(t, Config{})
	c, err := n.newClient(testCtx(t))
	require.NoError(t, err)
	pinned := fillWindow(t, c)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.TryAcquire(ctx, "x")
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(15 * time.Second):
		c.endRequest(pinned) // let it go
		t.Logf("let go: %v", <-done)
		t.Fatal("a call waited for a full window past its ctx")
	}

	done2 := make(chan error, 1)
	go func() {
		_, err := c.TryAcquire(context.Background(), "x")
		done2 <- err
	}()
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-done2:
		require.ErrorIs(t, err, lock.ErrClosed)
	case <-time.After(15 * time.Second):
		c.endRequest(pinned)
		t.Logf("let go: %v", <-done2)
		t.Fatal("Close did not end a call waiting for a full window")
	}
	require.NoError(t, <-closed)
}
