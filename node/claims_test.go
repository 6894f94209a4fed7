package node

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// TestClient_GrantInstalledBySnapshot: an Acquire whose own entry reaches
// this node inside an installed snapshot gets no Granted event (and a
// reconcile at the install skips it: its claim is not known yet). Its
// result says GRANTED; the lease must reach the caller, not an error
// while the store holds the name for this session (an orphan).
func TestClient_GrantInstalledBySnapshot(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	c, err := n.newClient(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	req, w, err := c.addWaiter(ctx, "x", false)
	require.NoError(t, err)
	c.endRequest(req.Seq)
	cmd := &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{Req: req, Name: "x"}}}
	res := installAfter(t, n, cmd)
	require.Equal(t, fsmpb.Code_CODE_GRANTED, res.GetCode())

	l, err := c.settle(ctx, "x", shape{}, req, w, res)
	require.NoError(t, err, "the grant reaches the caller")
	assert.Equal(t, res.GetToken(), l.Token())
	assert.NoError(t, l.Err())
	info, err := n.InspectLocal("x")
	require.NoError(t, err)
	assert.True(t, info.Held)
	require.NoError(t, l.Release(ctx))
}

// installAfter installs on n's bridge, as a snapshot, n's state with cmd
// applied as the next entry, and returns cmd's result.
func installAfter(t *testing.T, n *Node, cmd *fsmpb.Command) *fsmpb.Result {
	t.Helper()
	snap, err := n.bridge.Snapshot()
	require.NoError(t, err)
	framed := []byte(snap.(snapshotBytes))
	index := binary.BigEndian.Uint64(framed[:8]) + 1
	st, err := fsm.Restore(framed[8:])
	require.NoError(t, err)
	res, _, err := st.Apply(index, cmd)
	require.NoError(t, err)
	data, err := st.Snapshot()
	require.NoError(t, err)
	require.NoError(t, n.bridge.Restore(io.NopCloser(bytes.NewReader(
		append(binary.BigEndian.AppendUint64(nil, index), data...)))))
	return res
}

// TestClient_AmbiguousTTLAcquireOfExpiredSession: an Acquire WithTTL whose
// outcome is unknown (the caller gave up while its forward was in flight)
// and whose session expired meanwhile: re-proposing it answers
// UNKNOWN_SESSION, yet the TTL lease it was granted outlives the session.
// It must be released, not left held for its TTL by nobody: whether its
// grant reached the waiter here (event) or came in a snapshot (no event).
func TestClient_AmbiguousTTLAcquireOfExpiredSession(t *testing.T) {
	for _, viaSnapshot := range []bool{false, true} {
		t.Run(map[bool]string{false: "event", true: "snapshot"}[viaSnapshot], func(t *testing.T) {
			ctx := testCtx(t)
			n := newNode(t, Config{})
			c, err := n.newClient(ctx)
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })

			req, w, err := c.addWaiter(ctx, "t", true)
			require.NoError(t, err)
			cmd := &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
				Req: req, Name: "t", TtlNs: int64(time.Hour),
			}}}
			expire := &fsmpb.Command{Op: &fsmpb.Command_ExpireSession{ExpireSession: &fsmpb.ExpireSession{Session: req.Session}}}
			if viaSnapshot {
				require.Equal(t, fsmpb.Code_CODE_GRANTED, installAfter(t, n, cmd).GetCode())
				require.Equal(t, fsmpb.Code_CODE_OK, installAfter(t, n, expire).GetCode())
			} else {
				res, err := n.propose(ctx, cmd)
				require.NoError(t, err)
				require.Equal(t, fsmpb.Code_CODE_GRANTED, res.GetCode())
				res, err = n.propose(ctx, expire)
				require.NoError(t, err)
				require.Equal(t, fsmpb.Code_CODE_OK, res.GetCode())
			}
			info, err := n.InspectLocal("t")
			require.NoError(t, err)
			require.True(t, info.Held, "the TTL lease outlives its session")

			c.giveUp(req.Seq, w, cmd, true)
			waitFor(t, func() bool {
				info, err := n.InspectLocal("t")
				return err == nil && !info.Held
			})
		})
	}
}

// TestClient_TTLGrantExpiredBeforeReturn: a TTL lease whose local deadline
// passes before its Acquire returns (MinTTL on a slow, fsynced commit, as
// the conformance suite saw under load) is returned, already Done, not
// turned into an error: the suite and the contract allow a lease to end
// at any time, and the store ends it on its own timer.
func TestClient_TTLGrantExpiredBeforeReturn(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	c, err := n.newClient(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	req, w, err := c.addWaiter(ctx, "short", true)
	require.NoError(t, err)
	c.mu.Lock()
	w.sent = time.Now().Add(-time.Second) // as if the commit took a second
	c.mu.Unlock()
	cmd := &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
		Req: req, Name: "short", TtlNs: int64(100 * time.Millisecond),
	}}}
	res, err := n.propose(ctx, cmd)
	require.NoError(t, err)
	c.endRequest(req.Seq)
	l, err := c.settle(ctx, "short", shape{}, req, w, res)
	require.NoError(t, err)
	assert.Equal(t, res.GetToken(), l.Token())
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the lease's local deadline had passed: Done must close")
	}
	assert.ErrorIs(t, l.Err(), lock.ErrExpired)
}
