package zookeeper_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// faultTimeout is the session timeout of the Lockers the fault tests
// fault: short, so that the tests are quick (five ticks of the test
// servers' 200 ms tick). The other Lockers of a fault test, which must not
// lose their sessions, use stableTimeout, so that a loaded machine does
// not expire them by accident.
const (
	faultTimeout  = time.Second
	stableTimeout = 10 * time.Second
)

// waitDone waits for a lease's Done and returns when it closed.
func waitDone(t *testing.T, lease lock.Lease, within time.Duration, what string) time.Time {
	t.Helper()
	select {
	case <-lease.Done():
		return time.Now()
	case <-time.After(within):
		t.Fatalf("%s: Done not closed within %v", what, within)
	}
	panic("unreachable")
}

// waitPast polls until d has passed since start: the server-side event
// under test (a session expiring) is a matter of real time.
func waitPast(t *testing.T, start time.Time, d time.Duration) {
	t.Helper()
	eventually(t, d+time.Minute, "time passes", func() bool { return time.Since(start) > d })
}

// grant is the outcome of an Acquire made in a goroutine.
type grant struct {
	lease lock.Lease
	err   error
	at    time.Time
}

func goAcquire(ctx context.Context, l lock.Locker, name string, opts ...lock.Option) <-chan grant {
	out := make(chan grant, 1)
	go func() {
		lease, err := l.Acquire(ctx, name, opts...)
		out <- grant{lease, err, time.Now()}
	}()
	return out
}

// testPauseWhileHolding: the server stops answering (SIGSTOP) for longer
// than the session timeout. The holder's Done closes (ErrLost) before the
// server could expire the session; once the server runs again, another
// Locker gets the name (after the server expired the old session, or after
// the first Locker deleted its stale node) with a larger token, and the
// first Locker works again.
func testPauseWhileHolding(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	l1 := newLocker(t, servers, faultTimeout)
	const name = "pause-holding"
	ctx := ctxFor(t, time.Minute)
	held, err := l1.Acquire(ctx, name)
	require.NoError(t, err)

	paused := time.Now()
	z.Pause()
	lostAt := waitDone(t, held, 10*time.Second, "holder while the server is paused")
	assert.ErrorIs(t, held.Err(), lock.ErrLost)
	t.Logf("loss detection: Done closed %v after the server was paused (session timeout %v)", lostAt.Sub(paused).Round(time.Millisecond), faultTimeout)
	assert.Less(t, lostAt.Sub(paused), faultTimeout, "Done must close before the server could expire the session")
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

// gate is a zk.Dialer whose connections a test can cut: while cut, the
// open connections are closed and new dials fail, so the server hears
// nothing from the session and expires it after the session timeout.
//
// Armed by arm(&g.dropCreate), it closes the connection right after the
// next create request has been written, so that the server applies the
// create but the client never sees the reply. Armed by arm(&g.failCreate),
// it closes the connection just before the next create request is written,
// so that the write itself fails: go-zookeeper then hands the request the
// raw write error (a *net.OpError), not ErrConnectionClosed.
type gate struct {
	mu         sync.Mutex
	cut        bool
	dropCreate bool
	failCreate bool
	dropped    int
	failed     int
	conns      []net.Conn
}

func (g *gate) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cut {
		return nil, errors.New("gate: cut")
	}
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	g.conns = append(g.conns, c)
	return &gatedConn{Conn: c, g: g}, nil
}

type gatedConn struct {
	net.Conn
	g *gate
}

// Write sends one request packet (go-zookeeper writes each in one call:
// length, xid, opcode, body).
func (c *gatedConn) Write(b []byte) (int, error) {
	if c.g.take(b, &c.g.failCreate, &c.g.failed) {
		_ = c.Close()
	}
	n, err := c.Conn.Write(b)
	if c.g.take(b, &c.g.dropCreate, &c.g.dropped) {
		_ = c.Close()
	}
	return n, err
}

// take reports whether packet is a create request and *armed was set; it
// then disarms it and counts it in *count.
func (g *gate) take(packet []byte, armed *bool, count *int) bool {
	const opCreate, opCreateTTL = 1, 21
	if len(packet) < 12 {
		return false
	}
	op := binary.BigEndian.Uint32(packet[8:12])
	g.mu.Lock()
	defer g.mu.Unlock()
	if !*armed || (op != opCreate && op != opCreateTTL) {
		return false
	}
	*armed = false
	*count++
	return true
}

// arm sets one of g's flags (&g.dropCreate, &g.failCreate).
func (g *gate) arm(flag *bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	*flag = true
}

// count reads one of g's counters (&g.dropped, &g.failed).
func (g *gate) count(n *int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return *n
}

func (g *gate) Cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cut = true
	for _, c := range g.conns {
		_ = c.Close()
	}
	g.conns = nil
}

func (g *gate) Heal() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cut = false
}

// newGatedLocker returns a Locker on a connection (made by the test, passed
// as Config.Conn) whose traffic the returned gate can cut.
func newGatedLocker(t testing.TB, servers []string, timeout time.Duration) (*zookeeper.Locker, *gate) {
	t.Helper()
	g := &gate{}
	conn, _, err := zk.Connect(servers, timeout, zk.WithDialer(g.dial), zk.WithLogger(discard{}), zk.WithLogInfo(false))
	require.NoError(t, err)
	t.Cleanup(conn.Close) // after the Locker's Close (cleanups run last first)
	return startLocker(t, zookeeper.Config{Conn: conn, SessionTimeout: timeout}), g
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

	killed := time.Now()
	z.Kill()
	lostAt := waitDone(t, held, 10*time.Second, "holder after the server was killed")
	assert.ErrorIs(t, held.Err(), lock.ErrLost)
	t.Logf("loss detection: Done closed %v after the server was killed (session timeout %v)", lostAt.Sub(killed).Round(time.Millisecond), faultTimeout)
	z.Restart()

	l2 := newLocker(t, servers, stableTimeout)
	g := <-goAcquire(ctx, l2, name, lock.WithOwner("second"))
	require.NoError(t, g.err)
	assert.True(t, g.at.After(lostAt), "no two holders")
	assert.Greater(t, g.lease.Token(), held.Token(), "token after the restart (I2)")
	info, err := l1.Inspect(ctx, name)
	require.NoError(t, err, "the first Locker works after the restart")
	assert.Equal(t, lock.Info{Name: name, Held: true, Token: g.lease.Token(), Owner: "second"}, info)
	require.NoError(t, g.lease.Release(ctx))
}

// testKillMemberMidHold: a lease survives the crash of the ensemble member
// its Locker is connected to (no loss): the session moves to another
// member within the session timeout.
func testKillMemberMidHold(t *testing.T, e *testserver.Ensemble) {
	const timeout = 4 * time.Second
	leader := e.Leader(t)
	var followers []string
	for i := range e.Len() {
		if i != leader {
			followers = append(followers, e.Member(i).Addr())
		}
	}
	// Connect to the followers only, so that the crash moves the session
	// without an election.
	l := newLocker(t, followers, timeout)
	observer := newLocker(t, e.Servers(), timeout)
	const name = "kill-member"
	ctx := ctxFor(t, time.Minute)
	held, err := l.Acquire(ctx, name, lock.WithOwner("survivor"))
	require.NoError(t, err)

	connected := zookeeper.Conn(l).Server()
	var victim *testserver.ZooKeeper
	for i := range e.Len() {
		if e.Member(i).Addr() == connected {
			victim = e.Member(i)
		}
	}
	require.NotNil(t, victim, "connected to %s", connected)
	killed := time.Now()
	victim.Kill()
	eventually(t, 20*time.Second, "the session moved to another member", func() bool {
		return zookeeper.Conn(l).Server() != connected && held.Refresh(ctx) == nil
	})
	t.Logf("session moved %v after the member was killed", time.Since(killed).Round(time.Millisecond))
	// Hold for longer than the session timeout: the session was not expired.
	waitPast(t, killed, timeout+time.Second)
	require.NoError(t, held.Refresh(ctx))
	assert.NoError(t, held.Err(), "the lease must survive the crash of one member")
	info, err := observer.Inspect(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, lock.Info{Name: name, Held: true, Token: held.Token(), Owner: "survivor"}, info)
	require.NoError(t, held.Release(ctx))
	victim.Restart()
}

// testKillLeaderMidHold: a lease survives the crash of the leader. The
// ensemble elects a new leader, which gives every session a fresh timeout;
// the Locker must not declare the lease lost meanwhile, so the session
// timeout must leave room for the election: here 20 s, jeopardy after
// 10 s. An election usually takes about a second here, but took 5.2 s once
// on a loaded 2-core machine right after a member restart (ZooKeeper's
// election backs off its notifications exponentially), which ended a
// lease whose jeopardy came after 5 s.
func testKillLeaderMidHold(t *testing.T, e *testserver.Ensemble) {
	const timeout = 20 * time.Second
	e.WaitQuorum(t)
	l := newLocker(t, e.Servers(), timeout)
	const name = "kill-leader"
	ctx := ctxFor(t, time.Minute)
	held, err := l.Acquire(ctx, name, lock.WithOwner("survivor"))
	require.NoError(t, err)

	leader := e.Member(e.Leader(t))
	killed := time.Now()
	leader.Kill()
	eventually(t, 30*time.Second, "the ensemble serves writes again", func() bool {
		if err := held.Err(); err != nil {
			t.Fatalf("the lease ended %v after the leader was killed: %v", time.Since(killed).Round(time.Millisecond), err)
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return held.Refresh(rctx) == nil
	})
	t.Logf("leader killed: the lease was confirmed again after %v (session timeout %v)", time.Since(killed).Round(time.Millisecond), timeout)
	assert.NoError(t, held.Err(), "the lease must survive the crash of the leader")
	observer := newLocker(t, e.Servers(), timeout)
	info, err := observer.Inspect(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, lock.Info{Name: name, Held: true, Token: held.Token(), Owner: "survivor"}, info)
	require.NoError(t, held.Release(ctx))
	leader.Restart()
}

// testFailedCreateWrite: the connection dies under the write of a create
// request, so go-zookeeper fails that request with the raw write error. It
// is a connection-level failure like any other: Acquire reconnects, finds
// no node with its GUID (or adopts it, had some bytes reached the server)
// and succeeds, leaving exactly one node. The adapter used to treat the raw
// error as final and fail the Acquire (found by CI, where the probe or a
// list raced the close of the connection after a lost create reply).
func testFailedCreateWrite(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	gl, g := newGatedLocker(t, servers, 4*time.Second)
	observer := newLocker(t, servers, 4*time.Second)
	ctx := ctxFor(t, time.Minute)
	for _, k := range []struct {
		kind string
		opts []lock.Option
	}{{"session", nil}, {"TTL", []lock.Option{lock.WithTTL(time.Minute)}}} {
		name := "failed-write-" + k.kind
		failed := g.count(&g.failed)
		g.arm(&g.failCreate)
		lease, err := gl.Acquire(ctx, name, k.opts...)
		require.NoError(t, err, "%s: Acquire across a failed create write", k.kind)
		assert.Equal(t, failed+1, g.count(&g.failed), "%s: the create write must have failed", k.kind)
		kids := children(t, observer, name)
		require.Len(t, kids, 1, "%s: exactly one node", k.kind)
		assert.True(t, strings.HasSuffix(zookeeper.LeasePath(lease), "/"+kids[0]))
		require.NoError(t, lease.Release(ctx))
		assert.Empty(t, children(t, observer, name), "%s: nothing left after Release", k.kind)
	}
}

// testLostCreateReply: the connection drops right after a create request
// was written, so the server creates the node but the reply is lost. The
// claim finds its node by the GUID after reconnecting (same session),
// adopts it, and leaves exactly one node; Release leaves none.
func testLostCreateReply(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	gl, g := newGatedLocker(t, servers, 4*time.Second)
	observer := newLocker(t, servers, 4*time.Second)
	ctx := ctxFor(t, time.Minute)
	for _, k := range []struct {
		kind string
		opts []lock.Option
	}{{"session", nil}, {"TTL", []lock.Option{lock.WithTTL(time.Minute)}}} {
		name := "lost-reply-" + k.kind
		// The directory exists, so the next create is the claim's node.
		warm, err := gl.Acquire(ctx, name, k.opts...)
		require.NoError(t, err)
		require.NoError(t, warm.Release(ctx))

		dropped := g.count(&g.dropped)
		g.arm(&g.dropCreate)
		lease, err := gl.Acquire(ctx, name, k.opts...)
		require.NoError(t, err, "%s: Acquire across a lost create reply", k.kind)
		assert.Equal(t, dropped+1, g.count(&g.dropped), "%s: the create reply must have been dropped", k.kind)
		kids := children(t, observer, name)
		require.Len(t, kids, 1, "%s: exactly one node: the one the lost create made, adopted", k.kind)
		assert.True(t, strings.HasSuffix(zookeeper.LeasePath(lease), "/"+kids[0]))
		assert.True(t, strings.HasSuffix(kids[0], "-lock-0000000001"), "%s: the adopted node is the first create's (sequence 1 after the warm-up's 0): %s", k.kind, kids[0])
		info, err := observer.Inspect(ctx, name)
		require.NoError(t, err)
		assert.Equal(t, lease.Token(), info.Token)
		require.NoError(t, lease.Release(ctx))
		assert.Empty(t, children(t, observer, name), "%s: nothing left after Release", k.kind)
	}
}
