package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
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
	c.mu.Lock()
	pinned := c.nextRequest().Seq
	for range maxWindow - 1 {
		delete(c.inflight, c.nextRequest().Seq)
	}
	c.mu.Unlock()

	got := make(chan *fsmpb.Request, 1)
	go func() {
		c.mu.Lock()
		r := c.nextRequest()
		c.mu.Unlock()
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
