package zookeeper_test

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// testNegotiatedTimeout: a server that lowers the requested session timeout
// (the test server's maxSessionTimeout is 60 s) must lower the deadlines
// too, or a holder would trust its lease after the server expired it. The
// adapter learns the negotiated value from go-zookeeper's handshake log
// line; this test fails if that line ever changes.
func testNegotiatedTimeout(t *testing.T, servers []string) {
	l := newLocker(t, servers, 2*time.Minute)
	ctx := ctxFor(t, 20*time.Second)
	lease, err := l.Acquire(ctx, "negotiated")
	require.NoError(t, err)
	assert.Equal(t, time.Minute, zookeeper.SessionTimeout(l))
	require.NoError(t, lease.Release(ctx))
}

// loseTo runs fault (the server is paused, killed) under held, a session
// lease of a Locker with faultTimeout, and waits until held's Done closes
// with ErrLost; what names the fault in the log, waiting the holder in a
// failure. It returns when the fault began and when Done closed.
func loseTo(t *testing.T, held lock.Lease, fault func(), what, waiting string) (began, lostAt time.Time) {
	t.Helper()
	began = time.Now()
	fault()
	lostAt = waitDone(t, held, 10*time.Second, waiting)
	assert.ErrorIs(t, held.Err(), lock.ErrLost)
	t.Logf("loss detection: Done closed %v after the server was %s (session timeout %v)", lostAt.Sub(began).Round(time.Millisecond), what, faultTimeout)
	return began, lostAt
}

// testPauseWhileHolding: the server stops answering (SIGSTOP) for longer
// than the session timeout. The holder's Done closes (ErrLost) before the
// server could expire the session; once the server runs again, another
// Locker gets the name (after the server expired the old session, or after
// the first Locker deleted its stale node) with a larger token, and the
// first Locker works again.
func testPauseWhileHolding(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	rec := &logRecorder{}
	l1 := startLocker(t, zookeeper.Config{Servers: servers, SessionTimeout: faultTimeout, Logger: slog.New(rec)})
	const name = "pause-holding"
	ctx := ctxFor(t, time.Minute)
	held, err := l1.Acquire(ctx, name)
	require.NoError(t, err)

	paused, lostAt := loseTo(t, held, z.Pause, "paused", "holder while the server is paused")
	assert.Less(t, lostAt.Sub(paused), faultTimeout, "Done must close before the server could expire the session")
	attrs, ok := rec.find(slog.LevelWarn, "lease lost", name)
	if assert.True(t, ok, "the lost session lease is logged at Warn (issue 13)") {
		assert.Equal(t, held.Token(), attrs["token"], "the Warn names the token")
	}
	waitPast(t, paused, 2*faultTimeout)
	z.Resume()

	l2 := newLocker(t, servers, stableTimeout)
	g := <-goAcquire(ctx, l2, name)
	require.NoError(t, g.err, "the name must be granted again")
	assert.True(t, g.at.After(lostAt), "no two holders: the old holder's Done closed first")
	assert.Greater(t, g.lease.Token(), held.Token(), "token after the expiry (I2)")
	require.NoError(t, g.lease.Release(ctx))

	again, err := l1.Acquire(ctx, name)
	require.NoError(t, err, "Acquire on the first Locker after the pause")
	assert.Greater(t, again.Token(), g.lease.Token())
	require.NoError(t, again.Release(ctx))
}

// testExpiryWhileHolding: the holder's connection is cut for longer than
// the session timeout, so the server expires its session and hands the
// name to the waiter. The holder's Done closes first (I3); its TTL lease,
// which does not depend on the session, stays held; after the cut heals the
// Locker works on a new session.
func testExpiryWhileHolding(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	gl, g := newGatedLocker(t, servers, faultTimeout)
	w := newLocker(t, servers, stableTimeout)
	const name, ttlName = "expiry-holding", "expiry-holding-ttl"
	ctx := ctxFor(t, time.Minute)
	held, err := gl.Acquire(ctx, name)
	require.NoError(t, err)
	ttlHeld, err := gl.Acquire(ctx, ttlName, lock.WithTTL(time.Minute))
	require.NoError(t, err)
	waiting := goAcquire(ctx, w, name)
	eventually(t, 10*time.Second, "the waiter is queued", func() bool { return len(children(t, w, name)) == 2 })

	cut := time.Now()
	g.Cut()
	lostAt := waitDone(t, held, 10*time.Second, "holder after its connection was cut")
	assert.ErrorIs(t, held.Err(), lock.ErrLost)
	gr := <-waiting
	require.NoError(t, gr.err, "the waiter is granted once the server expired the holder's session")
	assert.True(t, gr.at.After(lostAt), "the holder's Done must close before the name is granted elsewhere (I3)")
	assert.Greater(t, gr.lease.Token(), held.Token())
	t.Logf("connection cut: holder's Done closed after %v, the server expired the session and granted the waiter after %v (session timeout %v)",
		lostAt.Sub(cut).Round(time.Millisecond), gr.at.Sub(cut).Round(time.Millisecond), faultTimeout)
	assert.NoError(t, ttlHeld.Err(), "a TTL lease does not depend on the session")

	g.Heal()
	eventually(t, 20*time.Second, "the Locker works again on a new session", func() bool {
		return ttlHeld.Refresh(ctx) == nil
	})
	require.NoError(t, gr.lease.Release(ctx))
	again, err := gl.Acquire(ctx, name)
	require.NoError(t, err)
	assert.Greater(t, again.Token(), gr.lease.Token())
	require.NoError(t, again.Release(ctx))
	require.NoError(t, ttlHeld.Release(ctx))
	assert.Empty(t, children(t, w, name))
	assert.Empty(t, children(t, w, ttlName))
}

// testExpiryWhileWaiting: a waiter's connection is cut until the server
// expires its session, which deletes its ephemeral node. When the
// connection heals the waiter queues again on its new session (its
// Acquire does not fail) and is granted when the holder releases.
func testExpiryWhileWaiting(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	h := newLocker(t, servers, stableTimeout)
	gl, g := newGatedLocker(t, servers, faultTimeout)
	const name = "expiry-waiting"
	ctx := ctxFor(t, time.Minute)
	held, err := h.Acquire(ctx, name)
	require.NoError(t, err)
	waiting := goAcquire(ctx, gl, name)
	eventually(t, 10*time.Second, "the waiter is queued", func() bool { return len(children(t, h, name)) == 2 })
	first := children(t, h, name)
	require.Len(t, first, 2)

	g.Cut()
	eventually(t, 20*time.Second, "the server expired the waiter's session and deleted its node", func() bool {
		return len(children(t, h, name)) == 1
	})
	g.Heal()
	var kids []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		kids = children(t, h, name)
		// The holder's node and a new one: exactly one of the old two.
		if len(kids) == 2 && slices.Contains(kids, first[0]) != slices.Contains(kids, first[1]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the waiter did not queue again: nodes before the cut %v, now %v; holder's Err %v", first, kids, held.Err())
		}
		select {
		case gr := <-waiting:
			t.Fatalf("the waiter returned while the name was held (nodes %v, holder's Err %v): %v", kids, held.Err(), gr.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case gr := <-waiting:
		t.Fatalf("the waiter returned while the name was held: %v", gr.err)
	default:
	}
	require.NoError(t, held.Release(ctx))
	gr := <-waiting
	require.NoError(t, gr.err, "the waiter must survive its session's expiry")
	assert.Greater(t, gr.lease.Token(), held.Token())
	require.NoError(t, gr.lease.Release(ctx))
	assert.Empty(t, children(t, h, name), "nothing left behind")
}

// testRestartWhileHolding: the standalone server is killed under a held
// session lease and restarted after the holder's Done closed. The lease is
// lost and signalled; another Locker gets the name only after that, when
// the old session has expired or the first Locker has deleted its stale
// node.
func testRestartWhileHolding(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	l1 := newLocker(t, servers, faultTimeout)
	const name = "restart"
	ctx := ctxFor(t, time.Minute)
	held, err := l1.Acquire(ctx, name, lock.WithOwner("first"))
	require.NoError(t, err)

	_, lostAt := loseTo(t, held, z.Kill, "killed", "holder after the server was killed")
	z.Restart()

	l2 := newLocker(t, servers, stableTimeout)
	g := <-goAcquire(ctx, l2, name, lock.WithOwner("second"))
	require.NoError(t, g.err)
	assert.True(t, g.at.After(lostAt), "no two holders")
	assert.Greater(t, g.lease.Token(), held.Token(), "token after the restart (I2)")
	info, err := l1.Inspect(ctx, name)
	require.NoError(t, err, "the first Locker works after the restart")
	assertHeldBy(t, info, g.lease, "second", l2)
	require.NoError(t, g.lease.Release(ctx))
}
