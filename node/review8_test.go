package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// Review of client sessions and lease keys: the clean-up paths of a grant
// waiter whose outcome is unknown.

// newLevel3Node starts a single node and waits until it applied protocol
// level 3.
func newLevel3Node(t *testing.T) *Node {
	t.Helper()
	n := newNode(t, Config{})
	waitFor(t, func() bool { return n.Stats().Protocol >= 3 })
	return n
}

// pendingGrant registers a grant waiter on n's default client as
// acquireForOnce does, and returns its request and waiter.
func pendingGrant(t *testing.T, ctx context.Context, n *Node, name string, owned bool) (*fsmpb.Request, *grantWaiter) {
	t.Helper()
	c := n.def
	c.mu.Lock()
	defer c.mu.Unlock()
	req, err := c.nextRequest(ctx)
	require.NoError(t, err)
	w := &grantWaiter{name: name, session: req.Session, owned: owned, ch: make(chan fsm.Event, 1), errc: make(chan error, 1)}
	c.grants[req.Seq] = w
	return req, w
}

// TestReview8_ResolveDoesNotStealALaterClaim: an AcquireFor at this node
// whose outcome is unknown (its forward was cut short and never reached
// the log) is settled in the background by proposing the very same
// request again. The client, whose call failed, asked again (here or at
// another node) and got the lease. The re-proposal must not take that
// lease over and end it: for a client session, a repeated Acquire is not
// "answered from the cache without a second effect" when the first never
// committed; it re-attaches to the claim the client made since, and
// resolve then cancels it.
func TestReview8_ResolveDoesNotStealALaterClaim(t *testing.T) {
	ctx := testCtx(t)
	n := newLevel3Node(t)
	s, err := n.OpenClientSession(ctx, time.Minute, "web")
	require.NoError(t, err)

	// The first call: registered and built, its forward lost before the
	// leader appended it.
	req, w := pendingGrant(t, ctx, n, "x", false)
	var key LeaseKey
	random(key[:])
	cmd := &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
		Req: req, Name: "x", ForSession: s.ID, Secret: s.Secret[:], Key: key[:],
	}}}

	// The client's retry gets the lease.
	g, err := n.AcquireFor(ctx, s, "x")
	require.NoError(t, err)

	// The first call's caller gave up with its outcome unknown.
	err = n.def.acquireForFailed(ctx, "x", req, w, cmd, nil, fmt.Errorf("%w: the forward was cut short", errAmbiguous), nil)
	require.Error(t, err)
	n.def.cleanups.Wait()

	info, err := n.InspectLocal("x")
	require.NoError(t, err)
	assert.True(t, info.Held, "the lease the client's retry got is still held")
	assert.Equal(t, g.Token, info.Token)
	_, err = n.RefreshKey(ctx, "x", g.Key)
	assert.NoError(t, err, "the client's key still names its lease")
}

// TestReview8_OrphanCleanupSparesAnotherKeyedLease: a keyed lease of no
// client session (AcquireKeyed) is a claim of the default session with no
// Lease on the client. A second AcquireKeyed of the same name, queued
// behind it, whose outcome is unknown and whose session expired meanwhile,
// is settled by orphanTTLClaim: "a TTL lease on the name, held for that
// session, for which the client has no lease". That describes the first
// caller's lease, which lives by its key and TTL whatever happens to the
// session: the clean-up must not end it.
func TestReview8_OrphanCleanupSparesAnotherKeyedLease(t *testing.T) {
	ctx := testCtx(t)
	n := newLevel3Node(t)
	g1, err := n.AcquireKeyed(ctx, "x", lock.WithTTL(time.Hour))
	require.NoError(t, err)

	req, w := pendingGrant(t, ctx, n, "x", true)
	var key LeaseKey
	random(key[:])
	cmd := &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
		Req: req, Name: "x", TtlNs: int64(time.Hour), Key: key[:],
	}}}
	res, err := n.propose(ctx, cmd)
	require.NoError(t, err)
	require.Equal(t, fsmpb.Code_CODE_QUEUED, res.GetCode(), "queued behind the first caller's lease")

	// The stream's session expires: the queued claim is withdrawn, the
	// keyed TTL lease lives on.
	res, err = n.propose(ctx, &fsmpb.Command{Op: &fsmpb.Command_ExpireSession{ExpireSession: &fsmpb.ExpireSession{Session: req.Session}}})
	require.NoError(t, err)
	require.Equal(t, fsmpb.Code_CODE_OK, res.GetCode())
	_, err = n.RefreshKey(ctx, "x", g1.Key)
	require.NoError(t, err, "the first caller's keyed lease outlives the session")

	// The second call's answer was lost: resolve settles it.
	err = n.def.acquireForFailed(ctx, "x", req, w, cmd, nil, fmt.Errorf("%w: the forward was cut short", errAmbiguous), nil)
	require.Error(t, err)
	n.def.cleanups.Wait()

	info, err := n.InspectLocal("x")
	require.NoError(t, err)
	assert.True(t, info.Held, "the first caller's lease is still held")
	assert.Equal(t, g1.Token, info.Token)
	_, err = n.RefreshKey(ctx, "x", g1.Key)
	assert.NoError(t, err, "the first caller's key still names its lease")
}

// TestReview8_MovedWhileCatchingUpIsErrMoved: a waiting AcquireFor whose
// claim the client session took over in another request fails with
// ErrMoved (its doc comment). When the re-attach reaches this node in a
// snapshot (no Moved event), reconcileGrant fails it with lock.ErrLost
// instead: the caller (lockd) cannot tell "you asked again elsewhere" from
// "your claim is gone".
func TestReview8_MovedWhileCatchingUpIsErrMoved(t *testing.T) {
	ctx := testCtx(t)
	n := newLevel3Node(t)
	s, err := n.OpenClientSession(ctx, time.Minute, "web")
	require.NoError(t, err)
	_, err = n.AcquireKeyed(ctx, "x", lock.WithTTL(time.Hour))
	require.NoError(t, err)

	waited := make(chan error, 1)
	go func() {
		_, err := n.AcquireFor(ctx, s, "x")
		waited <- err
	}()
	waitQueued(t, n, "x", 1)
	waitFor(t, func() bool { // the waiter knows its claim
		n.def.mu.Lock()
		defer n.def.mu.Unlock()
		for _, w := range n.def.grants {
			if w.claim != 0 {
				return true
			}
		}
		return false
	})

	// The client asks again in another request; this node learns of it
	// from a snapshot.
	c := n.def
	c.mu.Lock()
	req, err := c.nextRequest(ctx)
	c.mu.Unlock()
	require.NoError(t, err)
	c.endRequest(req.Seq)
	var key LeaseKey
	random(key[:])
	res := installAfter(t, n, &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
		Req: req, Name: "x", ForSession: s.ID, Secret: s.Secret[:], Key: key[:],
	}}})
	require.Equal(t, fsmpb.Code_CODE_QUEUED, res.GetCode(), "a re-attach")

	select {
	case err := <-waited:
		assert.ErrorIs(t, err, ErrMoved)
	case <-ctx.Done():
		t.Fatal("the moved waiter did not end")
	}
}
