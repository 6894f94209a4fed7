package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// Operating a lock on one node (DESIGN.md, "Operating a lock"): Inspect's
// new fields, List, Revoke and Adopt. The cluster cases are in
// cluster_ops_test.go.

// newOpsLocker is a new client of n, closed at the end of the test.
func newOpsLocker(t *testing.T, n *Node) *client {
	t.Helper()
	l, err := n.NewLocker(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l.(*client)
}

// hexSession is Info.Holder as the contract's node backend spells it.
func hexSession(l lock.Locker) string { return fmt.Sprintf("%016x", SessionOf(l)) }

// waitQueued waits until name has n waiters in n's applied state.
func waitQueued(t *testing.T, nd *Node, name string, n int) {
	t.Helper()
	waitFor(t, func() bool {
		info, err := nd.InspectLocal(name)
		return err == nil && info.Waiters == n
	})
}

// TestNode_InspectTellsTheStory: Kind, Holder (one per Locker), Node (the
// node's ID), Since (growing), and Queue in position order with each
// waiter's Holder, Node, Owner and Waited; WithQueueLimit bounds it and
// InspectLocal takes the same options.
func TestNode_InspectTellsTheStory(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{ID: "n-story"})
	a, b, c := newOpsLocker(t, n), newOpsLocker(t, n), newOpsLocker(t, n)
	require.NotEqual(t, hexSession(a), hexSession(b))

	held, err := a.Acquire(ctx, "story", lock.WithOwner("a"))
	require.NoError(t, err)
	ttl, err := b.Acquire(ctx, "story-ttl", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	defer func() { assert.NoError(t, ttl.Release(ctx)) }()

	first, err := a.Inspect(ctx, "story")
	require.NoError(t, err)
	assert.Equal(t, lock.KindSession, first.Kind)
	assert.Equal(t, hexSession(a), first.Holder)
	assert.Len(t, first.Holder, 16)
	assert.Equal(t, "n-story", first.Node)
	assert.Positive(t, first.Since)
	assert.Empty(t, first.Queue)

	other, err := c.Inspect(ctx, "story-ttl")
	require.NoError(t, err)
	assert.Equal(t, lock.KindTTL, other.Kind)
	assert.Equal(t, hexSession(b), other.Holder, "the Holder is the holder's, whoever asks")
	assert.NotEqual(t, first.Holder, other.Holder)

	// Two waiters, b then c: the queue in position order.
	waited := map[string]chan error{}
	for _, w := range []struct {
		l     *client
		owner string
	}{{b, "b"}, {c, "c"}} {
		ch := make(chan error, 1)
		waited[w.owner] = ch
		go func() {
			l, err := w.l.Acquire(ctx, "story", lock.WithOwner(w.owner))
			if err == nil {
				err = l.Release(ctx)
			}
			ch <- err
		}()
		waitQueued(t, n, "story", len(waited))
	}
	info, err := a.Inspect(ctx, "story")
	require.NoError(t, err)
	require.Len(t, info.Queue, 2)
	assert.Equal(t, 2, info.Waiters)
	for i, want := range []struct {
		l     *client
		owner string
	}{{b, "b"}, {c, "c"}} {
		q := info.Queue[i]
		assert.Equal(t, hexSession(want.l), q.Holder, "waiter %d", i)
		assert.Equal(t, "n-story", q.Node, "waiter %d", i)
		assert.Equal(t, want.owner, q.Owner, "waiter %d", i)
		assert.Positive(t, q.Waited, "waiter %d", i)
	}
	assert.GreaterOrEqual(t, info.Queue[0].Waited, info.Queue[1].Waited, "the first waiter has waited longer")
	assert.Greater(t, info.Since, first.Since, "Since grows")

	limited, err := a.Inspect(ctx, "story", lock.WithQueueLimit(1))
	require.NoError(t, err)
	require.Len(t, limited.Queue, 1)
	assert.Equal(t, 2, limited.Waiters, "Waiters counts them all")
	none, err := n.InspectLocal("story", lock.WithQueueLimit(0))
	require.NoError(t, err)
	assert.Empty(t, none.Queue)
	local, err := n.InspectLocal("story")
	require.NoError(t, err)
	require.Len(t, local.Queue, 2)
	assert.Equal(t, info.Queue[0].Holder, local.Queue[0].Holder)
	_, err = a.Inspect(ctx, "story", lock.WithQueueLimit(-1))
	assert.ErrorIs(t, err, lock.ErrInvalidOption)
	_, err = n.InspectLocal("story", lock.WithQueueLimit(lock.MaxQueueLimit+1))
	assert.ErrorIs(t, err, lock.ErrInvalidOption)

	require.NoError(t, held.Release(ctx))
	for owner, ch := range waited {
		require.NoError(t, <-ch, owner)
	}
	free, err := a.Inspect(ctx, "story")
	require.NoError(t, err)
	assert.Equal(t, lock.Info{Name: "story"}, free, "nothing is reported of a free name")
}

// TestNode_AgesOnTheLocalClock: Since counts from this node's own apply of
// the grant on its monotonic clock, so a wall clock an hour ahead changes
// nothing; a grant it did not see applied live (replayed at a restart) falls
// back on the leader's stamp against the wall clock, which then shows the
// hour. Without the start-up rule the replayed grant counted from its
// replay (Since ≈ 0).
func TestNode_AgesOnTheLocalClock(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	n, err := New(Config{DataDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Abort() })
	require.GreaterOrEqual(t, n.Stats().Protocol, 2, "grants are stamped from level 2 on")
	l, err := n.Acquire(ctx, "aged", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	SetWallSkew(n, time.Hour)
	live, err := n.Inspect(ctx, "aged")
	require.NoError(t, err)
	assert.Less(t, live.Since, time.Minute, "a grant seen live is aged on the monotonic clock")
	require.NoError(t, n.Abort())

	again := newNode(t, Config{DataDir: dir})
	SetWallSkew(again, time.Hour)
	replayed, err := again.Inspect(ctx, "aged")
	require.NoError(t, err)
	require.True(t, replayed.Held)
	assert.Equal(t, l.Token(), replayed.Token)
	assert.GreaterOrEqual(t, replayed.Since, time.Hour, "a replayed grant is aged by its stamp")
}

// TestNode_AgesBoundedByTheState: the apply times kept for Since and Waited
// are those of the grants and claims the state holds, and none once every
// name is free again.
func TestNode_AgesBoundedByTheState(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	a, b := newOpsLocker(t, n), newOpsLocker(t, n)
	size := func() int {
		var k int
		n.bridge.readAges(func(_ *fsm.State, a *ages) { k = a.size() })
		return k
	}
	var leases []lock.Lease
	for i := range 5 {
		l, err := a.Acquire(ctx, fmt.Sprintf("bound-%d", i))
		require.NoError(t, err)
		leases = append(leases, l)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := b.Acquire(wctx, "bound-0")
		done <- err
	}()
	waitQueued(t, n, "bound-0", 1)
	assert.Equal(t, 6, size(), "five grants and one queued claim")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	assert.Equal(t, 5, size(), "the withdrawn claim is gone")
	for _, l := range leases {
		require.NoError(t, l.Release(ctx))
	}
	assert.Zero(t, size(), "every grant ended")
}

// TestNode_ListPages: List pages through the held names with a prefix in
// byte order; the last page has no cursor; a cursor that is not one, or is
// from another prefix, is ErrInvalidOption.
func TestNode_ListPages(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	a := newOpsLocker(t, n)
	want := []string{"job/a", "job/b", "job/c", "job/d", "job/e"}
	for _, name := range append([]string{"jobs", "other", "jo"}, want...) {
		_, err := a.Acquire(ctx, name)
		require.NoError(t, err)
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10, "paging does not end")
		page, err := a.List(ctx, "job/", lock.WithLimit(2), lock.WithCursor(cursor))
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Locks), 2)
		for _, info := range page.Locks {
			assert.True(t, info.Held)
			assert.Equal(t, hexSession(a), info.Holder, info.Name)
			assert.Equal(t, lock.KindSession, info.Kind)
			got = append(got, info.Name)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	assert.Equal(t, want, got)

	all, err := n.List(ctx, "")
	require.NoError(t, err)
	var listed []string
	for _, info := range all.Locks {
		listed = append(listed, info.Name)
	}
	assert.Equal(t, []string{"jo", "job/a", "job/b", "job/c", "job/d", "job/e", "jobs", "other"}, listed, "byte order")
	assert.Empty(t, all.Next)

	exact, err := a.List(ctx, "job/", lock.WithLimit(5))
	require.NoError(t, err)
	assert.Len(t, exact.Locks, 5)
	assert.Empty(t, exact.Next, "a full page that ends the listing has no cursor")

	first, err := a.List(ctx, "job/", lock.WithLimit(1))
	require.NoError(t, err)
	require.NotEmpty(t, first.Next)
	for what, c := range map[string]string{
		"not base64":        "!!!",
		"not a name":        encodeCursor("\x01"),
		"another prefix":    encodeCursor("other"),
		"a cursor too long": string(make([]byte, lock.MaxCursorLen+1)),
	} {
		_, err := a.List(ctx, "job/", lock.WithCursor(c))
		assert.ErrorIs(t, err, lock.ErrInvalidOption, what)
	}
	_, err = a.List(ctx, "other", lock.WithCursor(first.Next))
	assert.ErrorIs(t, err, lock.ErrInvalidOption, "a cursor of another listing")
	_, err = a.List(ctx, "\x01")
	assert.ErrorIs(t, err, lock.ErrInvalidName)
	_, err = a.List(ctx, "", lock.WithLimit(0))
	assert.ErrorIs(t, err, lock.ErrInvalidOption)
}

// warnings records the messages and attributes of the records at Warn
// and above that reach it.
type warnings struct {
	mu   sync.Mutex
	seen []map[string]string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnings) WithGroup(string) slog.Handler                { return w }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	rec := map[string]string{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool {
		rec[a.Key] = a.Value.String()
		return true
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, rec)
	return nil
}

func (w *warnings) find(msg string) map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, rec := range w.seen {
		if rec["msg"] == msg {
			return rec
		}
	}
	return nil
}

// TestNode_RevokeHandsOn: the holder's Done closes with ErrRevoked before
// the waiter gets the name, with a greater token; Revoke returns once the
// lease has ended; the holder's node logs it at Warn; the revoked lease
// answers Release and Refresh with ErrNotHeld wrapping ErrRevoked; and
// the error cases of the contract.
func TestNode_RevokeHandsOn(t *testing.T) {
	ctx := testCtx(t)
	logs := &warnings{}
	// A grace (the session TTL) longer than ctx: the holder's node must end
	// and release the lease itself.
	n := newNode(t, Config{Logger: slog.New(logs), SessionTTL: time.Minute})
	holder, waiter, op := newOpsLocker(t, n), newOpsLocker(t, n), newOpsLocker(t, n)
	held, err := holder.Acquire(ctx, "revoked")
	require.NoError(t, err)

	type grant struct {
		lease    lock.Lease
		err      error
		holderOK bool // the holder's Done was closed, with ErrRevoked, when the grant came
	}
	granted := make(chan grant, 1)
	go func() {
		l, err := waiter.Acquire(ctx, "revoked")
		g := grant{lease: l, err: err}
		select {
		case <-held.Done():
			g.holderOK = errors.Is(held.Err(), lock.ErrRevoked)
		default:
		}
		granted <- g
	}()
	waitQueued(t, n, "revoked", 1)

	require.NoError(t, op.Revoke(ctx, "revoked", held.Token()))
	g := <-granted
	require.NoError(t, g.err)
	assert.True(t, g.holderOK, "I3: the holder's Done closed with ErrRevoked before the waiter got the name (holder: %v)", held.Err())
	assert.Greater(t, g.lease.Token(), held.Token())
	assert.ErrorIs(t, held.Err(), lock.ErrLost, "a revoke is a loss")
	err = held.Release(ctx)
	assert.ErrorIs(t, err, lock.ErrNotHeld)
	assert.ErrorIs(t, err, lock.ErrRevoked)
	assert.ErrorIs(t, held.Refresh(ctx), lock.ErrRevoked)

	warned := logs.find("lease revoked")
	require.NotNil(t, warned, "the holder's node logs the revoke at Warn")
	assert.Equal(t, "revoked", warned["name"])
	assert.Equal(t, fmt.Sprint(held.Token()), warned["token"])
	assert.Equal(t, hexSession(holder), warned["holder"])

	err = op.Revoke(ctx, "revoked", held.Token())
	assert.ErrorIs(t, err, lock.ErrNotHeld, "an ended token")
	assert.ErrorIs(t, op.Revoke(ctx, "revoked", g.lease.Token()+1000), lock.ErrNotHeld, "a wrong token")
	assert.ErrorIs(t, op.Revoke(ctx, "revoked", 0), lock.ErrNotHeld, "token 0")
	assert.ErrorIs(t, op.Revoke(ctx, "", 1), lock.ErrInvalidName)
	assert.ErrorIs(t, op.Revoke(ctx, "never-held", 1), lock.ErrNotHeld)
	require.NoError(t, g.lease.Release(ctx))
	require.NoError(t, op.Close())
	assert.ErrorIs(t, op.Revoke(ctx, "revoked", 1), lock.ErrClosed)
}

// TestNode_RevokeGraceEndsAnUnheardLease: a holder whose session lives on
// but who does not let go (here its Lease has ended locally without a
// release, as after a local deadline) is ended by the leader's grace
// timer, one session TTL after the revoke, and Revoke returns.
func TestNode_RevokeGraceEndsAnUnheardLease(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{SessionTTL: time.Second})
	holder := newOpsLocker(t, n)
	l, err := holder.Acquire(ctx, "unheard", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	holder.mu.Lock()
	l.(*lease).end(fmt.Errorf("%w: dropped by the test", lock.ErrLost)) // nothing reaches the store
	holder.mu.Unlock()

	require.NoError(t, n.Revoke(ctx, "unheard", l.Token()))
	info, err := n.Inspect(ctx, "unheard")
	require.NoError(t, err)
	assert.False(t, info.Held)
	assert.True(t, holder.ready.isOpen(), "the holder's session lived throughout")
}

// TestNode_AdoptTakesOver: a TTL lease adopted by another Locker keeps its
// token and TTL, changes Holder, and the previous holder, still alive,
// sees ErrAdopted; its Release does not touch the adopter's lease. A
// session lease, a wrong token and token 0 are ErrNotHeld.
func TestNode_AdoptTakesOver(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	prev, next := newOpsLocker(t, n), newOpsLocker(t, n)
	old, err := prev.Acquire(ctx, "adopted", lock.WithTTL(time.Minute), lock.WithOwner("job-7"))
	require.NoError(t, err)

	l, err := next.Adopt(ctx, "adopted", old.Token())
	require.NoError(t, err)
	assert.Equal(t, old.Token(), l.Token())
	assert.Equal(t, "adopted", l.Name())
	select {
	case <-old.Done():
	case <-ctx.Done():
		t.Fatal("the previous holder never heard of the adoption")
	}
	assert.ErrorIs(t, old.Err(), lock.ErrAdopted)
	assert.ErrorIs(t, old.Err(), lock.ErrLost)
	assert.ErrorIs(t, old.Release(ctx), lock.ErrNotHeld)

	info, err := n.Inspect(ctx, "adopted")
	require.NoError(t, err)
	assert.True(t, info.Held, "the previous holder's Release did not release the adopted lease")
	assert.Equal(t, old.Token(), info.Token)
	assert.Equal(t, hexSession(next), info.Holder)
	assert.Equal(t, "job-7", info.Owner)
	assert.Equal(t, lock.KindTTL, info.Kind)
	assert.LessOrEqual(t, info.ExpiresIn, time.Minute)
	require.NoError(t, l.Refresh(ctx))
	require.NoError(t, l.Release(ctx))

	sess, err := prev.Acquire(ctx, "session-lease")
	require.NoError(t, err)
	_, err = next.Adopt(ctx, "session-lease", sess.Token())
	assert.ErrorIs(t, err, lock.ErrNotHeld, "a session lease cannot be adopted")
	assert.Nil(t, sess.Err())
	_, err = next.Adopt(ctx, "adopted", old.Token())
	assert.ErrorIs(t, err, lock.ErrNotHeld, "an ended token")
	_, err = next.Adopt(ctx, "adopted", 0)
	assert.ErrorIs(t, err, lock.ErrNotHeld)
	_, err = next.Adopt(ctx, "", 1)
	assert.ErrorIs(t, err, lock.ErrInvalidName)
	require.NoError(t, next.Close())
	_, err = next.Adopt(ctx, "adopted", 1)
	assert.ErrorIs(t, err, lock.ErrClosed)
}

// TestNode_AdoptAfterRestart: the process that held a TTL lease crashed
// (Abort); its restart adopts the lease by its token and releases it.
func TestNode_AdoptAfterRestart(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	n, err := New(Config{DataDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Abort() })
	old, err := n.Acquire(ctx, "crashed", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	require.NoError(t, n.Abort())

	again := newNode(t, Config{DataDir: dir})
	l, err := again.Adopt(ctx, "crashed", old.Token())
	require.NoError(t, err)
	assert.Equal(t, old.Token(), l.Token())
	info, err := again.Inspect(ctx, "crashed")
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("%016x", SessionOf(again)), info.Holder)
	require.NoError(t, l.Release(ctx))
	info, err = again.Inspect(ctx, "crashed")
	require.NoError(t, err)
	assert.False(t, info.Held)
}

// TestNode_AtProtocol2WhenReady: a new node has committed protocol level
// 2 (SetProtocol after its term barrier) by the time New returns, so a
// Revoke right after start is not refused.
func TestNode_AtProtocol2WhenReady(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	assert.Equal(t, fsm.Protocol, n.Stats().Protocol)
	l, err := n.Acquire(ctx, "fresh")
	require.NoError(t, err)
	require.NoError(t, n.Revoke(ctx, "fresh", l.Token()))
	assert.ErrorIs(t, l.Err(), lock.ErrRevoked)
}

// TestNode_AdoptRevokedBeforeItReturns: an Adopt commits, and a Revoke of
// the adopted lease is applied here before Adopt reads the state to
// register the lease (adopted). Adopt then has no lease to give, but its
// session holds a revoked lease that only its holder's acknowledgement
// ends before the grace (the session's TTL): Adopt must release it by
// token. It used to answer ErrNotHeld and leave it: the Revoke waited out
// the grace (a minute here; the test's ctx ends first). The two steps of
// Adopt are run apart to put the Revoke between them every time.
func TestNode_AdoptRevokedBeforeItReturns(t *testing.T) {
	const name = "adopt-then-revoked"
	n := newNode(t, Config{SessionTTL: time.Minute})
	ctx := testCtx(t)
	holder, adopter, operator := newOpsLocker(t, n), newOpsLocker(t, n), newOpsLocker(t, n)
	lease, err := holder.Acquire(ctx, name, lock.WithTTL(time.Hour))
	require.NoError(t, err)

	sent := time.Now()
	res, req, err := adopter.sessionRequest(ctx, func(req *fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Adopt{Adopt: &fsmpb.Adopt{Req: req, Name: name, Token: lease.Token()}}}
	})
	require.NoError(t, err)
	require.Equal(t, fsmpb.Code_CODE_OK, res.GetCode())
	revoked := make(chan error, 1)
	go func() { revoked <- operator.Revoke(ctx, name, lease.Token()) }()
	waitFor(t, func() bool {
		var marked bool
		n.bridge.read(func(st *fsm.State) { marked = st.Lock(name).Revoked })
		return marked
	})

	_, err = adopter.adopted("adopt", name, lease.Token(), req.GetSession(), time.Duration(res.GetTtlNs()), sent)
	require.ErrorIs(t, err, lock.ErrNotHeld)
	require.ErrorIs(t, err, lock.ErrRevoked, "the caller learns why")
	require.NoError(t, <-revoked, "the adopter's session acknowledged the revoke: the Revoke did not wait out the grace")
	info, err := operator.Inspect(ctx, name)
	require.NoError(t, err)
	assert.False(t, info.Held)
}
