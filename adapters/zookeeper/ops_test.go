package zookeeper_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/lock"
)

// Operating a lock (issue 13; DESIGN.md, "Operating a lock"): Inspect's
// story, List, Revoke and Adopt.

var (
	_ lock.Lister  = (*zookeeper.Locker)(nil)
	_ lock.Revoker = (*zookeeper.Locker)(nil)
	_ lock.Adopter = (*zookeeper.Locker)(nil)
)

// clockSlack covers the servers' millisecond timestamps when a duration
// Info reports (on the server's clock, which on this machine is ours) is
// checked against bounds measured here.
const clockSlack = 5 * time.Millisecond

// within asserts lo − clockSlack ≤ got ≤ hi + clockSlack.
func within(t *testing.T, got, lo, hi time.Duration, what string) {
	t.Helper()
	assert.GreaterOrEqual(t, got, lo-clockSlack, "%s: %v, at least %v", what, got, lo)
	assert.LessOrEqual(t, got, hi+clockSlack, "%s: %v, at most %v", what, got, hi)
}

func inspect(t *testing.T, l *zookeeper.Locker, name string, opts ...lock.InspectOption) lock.Info {
	t.Helper()
	info, err := l.Inspect(ctxFor(t, 30*time.Second), name, opts...)
	require.NoError(t, err, "Inspect(%q)", name)
	return info
}

// waitWaiters polls Inspect until name has n waiters.
func waitWaiters(t *testing.T, l *zookeeper.Locker, name string, n int) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("%q has %d waiters", name, n), func() bool { return inspect(t, l, name).Waiters == n })
}

// await is the outcome of an Acquire started with goAcquire.
func await(t *testing.T, ch <-chan grant, what string) grant {
	t.Helper()
	select {
	case g := <-ch:
		require.NoError(t, g.err, what)
		return g
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not granted within 30s", what)
	}
	panic("unreachable")
}

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

// find returns the attributes of the first record with level and msg
// about the lock name.
func (r *logRecorder) find(level slog.Level, msg, name string) (map[string]any, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.Level != level || rec.Message != msg {
			continue
		}
		attrs := map[string]any{}
		rec.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.Any()
			return true
		})
		if attrs["name"] == name {
			return attrs, true
		}
	}
	return nil, false
}

// plant creates a claim node with data in dir on conn's session (TTL
// node if ttl > 0, else ephemeral), as a Locker of another version would,
// and returns its path and czxid.
func plant(t *testing.T, conn *zk.Conn, dir string, data []byte, ttl time.Duration) (string, uint64) {
	t.Helper()
	acl := zk.WorldACL(zk.PermAll)
	if _, err := conn.Create("/quorumlock-test", nil, zk.FlagPersistent, acl); !errors.Is(err, zk.ErrNodeExists) {
		require.NoError(t, err)
	}
	prefix := dir + "/" + zookeeper.ChildPrefix(newGUID(t))
	var path string
	for attempt := 0; ; attempt++ {
		if _, err := conn.CreateContainer(dir, nil, zk.FlagContainer, acl); !errors.Is(err, zk.ErrNodeExists) {
			require.NoError(t, err)
		}
		var err error
		if ttl > 0 {
			path, err = conn.CreateTTL(prefix, data, zk.FlagPersistentSequentialWithTTL, acl, ttl)
		} else {
			path, err = conn.Create(prefix, data, zk.FlagEphemeralSequential, acl)
		}
		if errors.Is(err, zk.ErrNoNode) && attempt < 10 {
			continue // the server reaped the empty container meanwhile
		}
		require.NoError(t, err)
		break
	}
	_, stat, err := conn.Exists(path)
	require.NoError(t, err)
	return path, uint64(stat.Czxid)
}

// rawConn is a connection (its own session) for planting nodes.
func rawConn(t *testing.T, servers []string) *zk.Conn {
	t.Helper()
	conn, _, err := zk.Connect(servers, stableTimeout, zk.WithLogInfo(false), zk.WithLogger(discard{}))
	require.NoError(t, err)
	t.Cleanup(conn.Close)
	return conn
}

// testInspectStory: Inspect tells who holds a name, since when, from
// which node, and who waits behind it in order and for how long — every
// duration on the server's clock (here the same machine's, so it can be
// checked against the test's own bounds).
func testInspectStory(t *testing.T, servers []string) {
	node := func(n string) *zookeeper.Locker {
		return startLocker(t, zookeeper.Config{Servers: servers, SessionTimeout: stableTimeout, Node: n})
	}
	a, b, c := node("node-a"), node("node-b"), node("node-c")
	obs := newLocker(t, servers, stableTimeout) // Node: the host name
	const name = "story"
	ctx := ctxFor(t, 2*time.Minute)
	assert.Equal(t, lock.Info{Name: name}, inspect(t, obs, name), "a name never locked")

	aCalled := time.Now()
	held, err := a.Acquire(ctx, name, lock.WithOwner("holder"))
	require.NoError(t, err)
	aReturned := time.Now()
	bCalled := time.Now()
	wb := goAcquire(ctx, b, name, lock.WithOwner("w1"))
	waitWaiters(t, obs, name, 1)
	bQueued := time.Now()
	wc := goAcquire(ctx, c, name, lock.WithOwner("w2"), lock.WithTTL(time.Minute))
	waitWaiters(t, obs, name, 2)

	iCalled := time.Now()
	info := inspect(t, obs, name)
	iReturned := time.Now()
	assertHeldBy(t, info, held, "holder", a)
	assert.Equal(t, lock.KindSession, info.Kind)
	assert.Equal(t, "node-a", info.Node)
	assert.Zero(t, info.ExpiresIn)
	assert.Equal(t, 2, info.Waiters)
	within(t, info.Since, iCalled.Sub(aReturned), iReturned.Sub(aCalled), "Since of a lease that did not wait")
	require.Len(t, info.Queue, 2)
	assert.Equal(t, lock.Waiter{Holder: zookeeper.HolderID(b), Node: "node-b", Owner: "w1", Waited: info.Queue[0].Waited}, info.Queue[0])
	within(t, info.Queue[0].Waited, iCalled.Sub(bQueued), iReturned.Sub(bCalled), "Waited")
	assert.Equal(t, lock.Waiter{Holder: zookeeper.HolderID(c), Node: "node-c", Owner: "w2", Waited: info.Queue[1].Waited}, info.Queue[1])
	assert.Len(t, zookeeper.HolderID(a), 32)
	assert.NotEqual(t, zookeeper.HolderID(a), zookeeper.HolderID(b))

	info = inspect(t, obs, name, lock.WithQueueLimit(1))
	assert.Equal(t, 2, info.Waiters)
	require.Len(t, info.Queue, 1)
	assert.Equal(t, zookeeper.HolderID(b), info.Queue[0].Holder)
	info = inspect(t, obs, name, lock.WithQueueLimit(0))
	assert.Equal(t, 2, info.Waiters)
	assert.Nil(t, info.Queue)
	_, err = obs.Inspect(ctx, name, lock.WithQueueLimit(lock.MaxQueueLimit+1))
	assert.ErrorIs(t, err, lock.ErrInvalidOption)

	// b waited: its Since counts from its grant, not from its node's
	// creation (its Locker writes the grant time within a probe interval).
	waitPast(t, bQueued, 300*time.Millisecond)
	released := time.Now()
	require.NoError(t, held.Release(ctx))
	gb := await(t, wb, "b after a's release")
	eventually(t, 20*time.Second, "b's Since counts from its grant", func() bool {
		info := inspect(t, obs, name)
		return info.Token == gb.lease.Token() && info.Since <= time.Since(released)+clockSlack
	})
	assert.Equal(t, "node-b", inspect(t, obs, name).Node)

	// c holds a TTL lease: ExpiresIn, and a Since that a Refresh does not
	// reset.
	bReleased := time.Now()
	require.NoError(t, gb.lease.Release(ctx))
	gc := await(t, wc, "c after b's release")
	iCalled = time.Now()
	info = inspect(t, obs, name)
	iReturned = time.Now()
	assertHeldBy(t, info, gc.lease, "w2", c)
	assert.Equal(t, lock.KindTTL, info.Kind)
	assert.Equal(t, "node-c", info.Node)
	within(t, info.Since, iCalled.Sub(gc.at), iReturned.Sub(bReleased), "Since of a TTL lease")
	within(t, info.ExpiresIn, time.Minute-iReturned.Sub(bReleased), time.Minute, "ExpiresIn of a TTL lease")
	waitPast(t, gc.at, 300*time.Millisecond)
	refreshed := time.Now()
	require.NoError(t, gc.lease.Refresh(ctx))
	iCalled = time.Now()
	info = inspect(t, obs, name)
	iReturned = time.Now()
	within(t, info.Since, iCalled.Sub(gc.at), iReturned.Sub(bReleased), "Since of a TTL lease after a Refresh")
	within(t, info.ExpiresIn, time.Minute-iReturned.Sub(refreshed), time.Minute, "ExpiresIn after a Refresh")
	require.NoError(t, gc.lease.Release(ctx))
	assert.Equal(t, lock.Info{Name: name}, inspect(t, obs, name))

	host, err := os.Hostname()
	require.NoError(t, err)
	lease, err := obs.Acquire(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, host, inspect(t, a, name).Node, "Config.Node defaults to the host name")
	require.NoError(t, lease.Release(ctx))
}

// testOldFormatData: nodes of Lockers of the earlier version (node data
// format 1) are reported and queued behind as before, and their TTL
// leases can be adopted.
func testOldFormatData(t *testing.T, servers []string) {
	l := newLocker(t, servers, stableTimeout)
	old := rawConn(t, servers)
	ctx := ctxFor(t, time.Minute)
	const name = "format1"
	dir := zookeeper.Dir(l, name)
	path, token := plant(t, old, dir, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'o', 'l', 'd'}, 0)
	info := inspect(t, l, name)
	assert.True(t, info.Held)
	assert.Equal(t, token, info.Token)
	assert.Equal(t, "old", info.Owner)
	assert.Equal(t, lock.KindSession, info.Kind)
	assert.Equal(t, fmt.Sprintf("session-%x", old.SessionID()), info.Holder)
	assert.Empty(t, info.Node)

	waiting := goAcquire(ctx, l, name, lock.WithOwner("new"))
	waitWaiters(t, l, name, 1)
	info = inspect(t, l, name)
	require.Len(t, info.Queue, 1)
	assert.Equal(t, zookeeper.HolderID(l), info.Queue[0].Holder)
	require.NoError(t, old.Delete(path, -1))
	g := await(t, waiting, "the waiter behind a format-1 holder")
	require.NoError(t, g.lease.Release(ctx))

	const ttlName = "format1-ttl"
	_, token = plant(t, old, zookeeper.Dir(l, ttlName), []byte{1, 1, 0, 0, 0, 0, 0, 0, 0xea, 0x60, 'j', 'o', 'b'}, time.Minute)
	info = inspect(t, l, ttlName)
	assert.Equal(t, lock.KindTTL, info.Kind)
	assert.Equal(t, "job", info.Owner)
	assert.Empty(t, info.Holder)
	assert.Greater(t, info.ExpiresIn, time.Duration(0))
	assert.LessOrEqual(t, info.ExpiresIn, time.Minute)
	adopted, err := l.Adopt(ctx, ttlName, token)
	require.NoError(t, err, "a format-1 TTL lease can be adopted")
	assertHeldBy(t, inspect(t, l, ttlName), adopted, "job", l)
	require.NoError(t, adopted.Release(ctx))
	assert.False(t, inspect(t, l, ttlName).Held)
}

// testList: List pages through held names in byte order of the names
// (not of their escaped forms), exactly limit per page, skipping empty
// directories and children of the root that are no lock names.
func testList(t *testing.T, servers []string) {
	l := startLocker(t, zookeeper.Config{Servers: servers, SessionTimeout: stableTimeout, Node: "lister"})
	w := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	names := []string{"list/a", "list/a-", "list/a-ttl", "list/a.", "list/a/b%c é", "list/ab"}
	require.True(t, sort.StringsAreSorted(names))
	leases := map[string]lock.Lease{}
	for _, n := range append(slices.Clone(names), "list/b") {
		var opts []lock.Option
		if n == "list/a-ttl" {
			opts = append(opts, lock.WithTTL(time.Minute))
		}
		lease, err := l.Acquire(ctx, n, append(opts, lock.WithOwner("o "+n))...)
		require.NoError(t, err)
		leases[n] = lease
	}
	waiting := goAcquire(ctx, w, "list/ab")
	waitWaiters(t, l, "list/ab", 1)
	conn := zookeeper.Conn(l)
	empty := zookeeper.Dir(l, "list/a0") // a container that never had a child is not reaped
	_, err := conn.CreateContainer(empty, nil, zk.FlagContainer, zk.WorldACL(zk.PermAll))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Delete(empty, -1) })
	junk := "/quorumlock-test/not.a.name"
	_, err = conn.Create(junk, nil, zk.FlagPersistent, zk.WorldACL(zk.PermAll))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Delete(junk, -1) })

	list := func(prefix string, limit int) ([]lock.Info, int) {
		var (
			all    []lock.Info
			cursor string
			pages  int
		)
		for {
			page, err := l.List(ctx, prefix, lock.WithLimit(limit), lock.WithCursor(cursor))
			require.NoError(t, err, "List(%q) page %d", prefix, pages)
			pages++
			if page.Next != "" {
				require.Len(t, page.Locks, limit, "a page with a next one is full")
			}
			require.LessOrEqual(t, len(page.Locks), limit)
			all = append(all, page.Locks...)
			if page.Next == "" {
				return all, pages
			}
			require.Less(t, pages, 20, "List(%q) does not end", prefix)
			cursor = page.Next
		}
	}
	namesOf := func(infos []lock.Info) []string {
		var out []string
		for _, i := range infos {
			out = append(out, i.Name)
		}
		return out
	}
	for limit := 1; limit <= len(names)+1; limit++ {
		got, pages := list("list/a", limit)
		assert.Equal(t, names, namesOf(got), "limit %d", limit)
		assert.Equal(t, (len(names)+limit-1)/limit, pages, "pages of limit %d: the last page is known to be last", limit)
	}
	got, _ := list("list/a", 100)
	for _, info := range got {
		le := leases[info.Name]
		assertHeldBy(t, info, le, "o "+info.Name, l)
		assert.Equal(t, "lister", info.Node)
		assert.Nil(t, info.Queue, "List reports no queue")
		want := lock.KindSession
		if info.Name == "list/a-ttl" {
			want = lock.KindTTL
		}
		assert.Equal(t, want, info.Kind, info.Name)
	}
	assert.Equal(t, 1, got[len(got)-1].Waiters, "list/ab has a waiter")
	only, _ := list("list/a/", 10)
	assert.Equal(t, []string{"list/a/b%c é"}, namesOf(only))
	wider, _ := list("list/", 3)
	assert.Equal(t, append(slices.Clone(names), "list/b"), namesOf(wider))
	everything, _ := list("", lock.MaxListLimit)
	assert.True(t, sort.SliceIsSorted(everything, func(i, j int) bool { return everything[i].Name < everything[j].Name }))
	var ours []string
	for _, n := range namesOf(everything) {
		if leases[n] != nil {
			ours = append(ours, n)
		}
	}
	assert.Equal(t, append(slices.Clone(names), "list/b"), ours)

	first, err := l.List(ctx, "list/a", lock.WithLimit(2))
	require.NoError(t, err)
	require.NotEmpty(t, first.Next)
	for _, c := range []struct{ prefix, cursor string }{{"list/a", "garbage"}, {"list/", first.Next}, {"list/a", first.Next + "x"}} {
		_, err := l.List(ctx, c.prefix, lock.WithCursor(c.cursor))
		assert.ErrorIs(t, err, lock.ErrInvalidOption, "cursor %q with prefix %q", c.cursor, c.prefix)
	}
	_, err = l.List(ctx, "bad\x00")
	assert.ErrorIs(t, err, lock.ErrInvalidName)
	_, err = l.List(ctx, "list/", lock.WithLimit(0))
	assert.ErrorIs(t, err, lock.ErrInvalidOption)

	require.NoError(t, leases["list/a"].Release(ctx))
	got, _ = list("list/a", 100)
	assert.Equal(t, names[1:], namesOf(got), "a released name is not listed")
	for _, n := range names[1:] {
		require.NoError(t, leases[n].Release(ctx))
	}
	require.NoError(t, leases["list/b"].Release(ctx))
	g := await(t, waiting, "the waiter on list/ab")
	require.NoError(t, g.lease.Release(ctx))
}

// nodeTokens returns the czxid of every claim node of name, in queue
// order.
func nodeTokens(t *testing.T, l *zookeeper.Locker, name string) []uint64 {
	t.Helper()
	kids := children(t, l, name)
	sort.Slice(kids, func(i, j int) bool { return kids[i][len(kids[i])-10:] < kids[j][len(kids[j])-10:] })
	var out []uint64
	for _, k := range kids {
		_, stat, err := zookeeper.Conn(l).Exists(zookeeper.Dir(l, name) + "/" + k)
		require.NoError(t, err)
		out = append(out, uint64(stat.Czxid))
	}
	return out
}

// testRevokeWhileWaiting: Revoke ends a live holder's lease in two steps:
// the holder's Done closes with ErrRevoked before the waiter is granted;
// the revoked token can neither refresh nor release; the waiter's token is
// greater. Wrong tokens, a waiter's token and token 0 are ErrNotHeld. The
// holder logs the revoke at Warn.
func testRevokeWhileWaiting(t *testing.T, servers []string) {
	rec := &logRecorder{}
	h := startLocker(t, zookeeper.Config{Servers: servers, SessionTimeout: stableTimeout, Logger: slog.New(rec)})
	w := newLocker(t, servers, stableTimeout)
	op := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	for _, k := range claimKinds {
		name := "revoke-" + k.kind
		held, err := h.Acquire(ctx, name, append(k.opts, lock.WithOwner("stuck"))...)
		require.NoError(t, err)
		waiting := goAcquire(ctx, w, name)
		waitWaiters(t, op, name, 1)
		tokens := nodeTokens(t, op, name)
		require.Len(t, tokens, 2)
		for _, bad := range []struct {
			name  string
			token uint64
		}{{name, held.Token() + 1}, {name, 0}, {name, tokens[1]}, {"revoke-free", held.Token()}} {
			err := op.Revoke(ctx, bad.name, bad.token)
			assert.ErrorIs(t, err, lock.ErrNotHeld, "%s: Revoke(%q, %d)", k.kind, bad.name, bad.token)
		}
		assert.NoError(t, held.Err(), "%s: a refused Revoke leaves the lease alone", k.kind)

		revoked := goCall(func() error { return op.Revoke(ctx, name, held.Token()) })
		g := await(t, waiting, k.kind+": the waiter behind a revoked lease")
		select {
		case <-held.Done():
		default:
			t.Fatalf("%s: the waiter was granted before the revoked holder's Done closed", k.kind)
		}
		assert.ErrorIs(t, held.Err(), lock.ErrRevoked, k.kind)
		assert.ErrorIs(t, held.Err(), lock.ErrLost, k.kind)
		assert.Greater(t, g.lease.Token(), held.Token(), k.kind)
		require.NoError(t, outcome(t, revoked, 30*time.Second, "Revoke"), k.kind)
		err = held.Refresh(ctx)
		assert.ErrorIs(t, err, lock.ErrNotHeld, k.kind)
		assert.ErrorIs(t, err, lock.ErrRevoked, k.kind)
		assert.ErrorIs(t, held.Release(ctx), lock.ErrNotHeld, k.kind)
		assert.ErrorIs(t, op.Revoke(ctx, name, held.Token()), lock.ErrNotHeld, "%s: Revoke of an ended lease", k.kind)
		assertHeldBy(t, inspect(t, op, name), g.lease, "", w)
		attrs, ok := rec.find(slog.LevelWarn, "lease revoked", name)
		if assert.True(t, ok, "%s: the holder logs the revoke at Warn", k.kind) {
			assert.Equal(t, map[string]any{"name": name, "token": held.Token(), "holder": zookeeper.HolderID(h)}, attrs)
		}
		require.NoError(t, g.lease.Release(ctx))
	}

	// A Locker that revokes its own lease ends it at once.
	held, err := h.Acquire(ctx, "revoke-self", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	require.NoError(t, h.Revoke(ctx, "revoke-self", held.Token()))
	assert.ErrorIs(t, held.Err(), lock.ErrRevoked)
	assert.False(t, inspect(t, op, "revoke-self").Held)
}

// testRevokeSeenByRefresh: a holder's Refresh made after the mark, before
// its Locker's poll came round (a minute's session: every 7.5 s), fails
// with ErrNotHeld and ErrRevoked and ends the lease, which lets go: the
// Refresh does not overwrite the mark.
func testRevokeSeenByRefresh(t *testing.T, servers []string) {
	h := newLocker(t, servers, time.Minute)
	op := newLocker(t, servers, stableTimeout)
	w := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	for _, k := range claimKinds {
		name := "revoke-refresh-" + k.kind
		held, err := h.Acquire(ctx, name, k.opts...)
		require.NoError(t, err)
		waiting := goAcquire(ctx, w, name)
		waitWaiters(t, op, name, 1)
		revoked := goCall(func() error { return op.Revoke(ctx, name, held.Token()) })
		eventually(t, 20*time.Second, "the holder's node is marked revoked", func() bool {
			data, _, err := zookeeper.Conn(op).Get(zookeeper.LeasePath(held))
			require.NoError(t, err)
			r, err := zookeeper.DecodeRecord(data)
			require.NoError(t, err)
			return r.State == zookeeper.StateRevoked
		})
		err = held.Refresh(ctx)
		assert.ErrorIs(t, err, lock.ErrNotHeld, k.kind)
		assert.ErrorIs(t, err, lock.ErrRevoked, k.kind)
		g := await(t, waiting, k.kind+": the waiter behind a lease revoked under its Refresh")
		assert.ErrorIs(t, held.Err(), lock.ErrRevoked, k.kind)
		require.NoError(t, outcome(t, revoked, 30*time.Second, "Revoke"), k.kind)
		require.NoError(t, g.lease.Release(ctx))
	}
}

// testRevokeUnresponsiveTTL: a TTL lease whose holder cannot hear (its
// connection is cut) is deleted by the revoker after the grace (the
// longer of the two Lockers' session timeouts), not before; the waiter is
// then granted. Once the holder hears again its lease ends.
func testRevokeUnresponsiveTTL(t *testing.T, servers []string) {
	const grace = 2 * time.Second
	h, g := newGatedLocker(t, servers, grace)
	op := newLocker(t, servers, time.Second)
	w := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const name = "revoke-unresponsive"
	held, err := h.Acquire(ctx, name, lock.WithTTL(time.Minute))
	require.NoError(t, err)
	waiting := goAcquire(ctx, w, name)
	waitWaiters(t, op, name, 1)

	g.Cut()
	t.Cleanup(g.Heal)
	start := time.Now()
	require.NoError(t, op.Revoke(ctxFor(t, 30*time.Second), name, held.Token()))
	assert.GreaterOrEqual(t, time.Since(start), grace, "the node is deleted only after the grace")
	gr := await(t, waiting, "the waiter behind an unresponsive holder")
	assert.Greater(t, gr.lease.Token(), held.Token())

	g.Heal()
	waitDone(t, held, 30*time.Second, "the revoked holder once it hears again")
	assert.ErrorIs(t, held.Err(), lock.ErrLost)
	assert.ErrorIs(t, held.Refresh(ctx), lock.ErrNotHeld)
	require.NoError(t, gr.lease.Release(ctx))
}

// testRevokeSessionNotForced: a session lease is never deleted by the
// revoker: a holder that cannot hear cannot keep its session either. With
// the holder cut off, Revoke returns ctx's error and the node stays; once
// the holder hears again it learns of the revoke and lets go.
func testRevokeSessionNotForced(t *testing.T, servers []string) {
	h, g := newGatedLocker(t, servers, 20*time.Second)
	op := newLocker(t, servers, time.Second) // a TTL lease's grace would be over
	ctx := ctxFor(t, 2*time.Minute)
	const name = "revoke-session-cut"
	held, err := h.Acquire(ctx, name)
	require.NoError(t, err)

	g.Cut()
	t.Cleanup(g.Heal)
	err = op.Revoke(ctxFor(t, 2*time.Second), name, held.Token())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	ok, _, err := zookeeper.Conn(op).Exists(zookeeper.LeasePath(held))
	require.NoError(t, err)
	assert.True(t, ok, "the revoker must not delete a session lease's node")

	g.Heal()
	waitDone(t, held, 30*time.Second, "the revoked holder once it hears again")
	assert.ErrorIs(t, held.Err(), lock.ErrRevoked)
	eventually(t, 30*time.Second, "the holder deletes its node", func() bool { return len(children(t, op, name)) == 0 })
}

// testAdoptAfterHolderVanished: a TTL lease whose holder is gone (cut
// off for good, as a crashed process) is adopted by its token: same token,
// same owner, the original grant time; the adopter refreshes and releases
// it. When the old holder hears again its lease ends with ErrAdopted, and
// its Release leaves the adopter's node alone.
func testAdoptAfterHolderVanished(t *testing.T, servers []string) {
	a, g := newGatedLocker(t, servers, stableTimeout)
	b := startLocker(t, zookeeper.Config{Servers: servers, SessionTimeout: stableTimeout, Node: "node-b"})
	ctx := ctxFor(t, 2*time.Minute)
	const name = "adopt-vanished"
	held, err := a.Acquire(ctx, name, lock.WithTTL(time.Minute), lock.WithOwner("job"))
	require.NoError(t, err)
	heldAt := time.Now()
	g.Cut()
	t.Cleanup(g.Heal)
	waitPast(t, heldAt, 300*time.Millisecond)

	adopted, err := b.Adopt(ctx, name, held.Token())
	require.NoError(t, err)
	assert.Equal(t, held.Token(), adopted.Token())
	assert.Equal(t, name, adopted.Name())
	iCalled := time.Now()
	info := inspect(t, b, name)
	assertHeldBy(t, info, adopted, "job", b)
	assert.Equal(t, lock.KindTTL, info.Kind)
	assert.Equal(t, "node-b", info.Node)
	assert.GreaterOrEqual(t, info.Since, iCalled.Sub(heldAt)-clockSlack, "an adoption keeps the grant time")
	require.NoError(t, adopted.Refresh(ctx))

	g.Heal()
	waitDone(t, held, 30*time.Second, "the old holder once it hears again")
	assert.ErrorIs(t, held.Err(), lock.ErrAdopted)
	assert.ErrorIs(t, held.Err(), lock.ErrLost)
	assert.ErrorIs(t, held.Refresh(ctx), lock.ErrNotHeld)
	assert.ErrorIs(t, held.Release(ctx), lock.ErrNotHeld)
	eventually(t, 30*time.Second, "the old holder has nothing left to delete", func() bool { return zookeeper.Orphans(a) == 0 })
	require.NoError(t, adopted.Refresh(ctx), "the old holder must leave the adopter's node alone")
	require.NoError(t, adopted.Release(ctx))
	assert.False(t, inspect(t, b, name).Held)
}

// testAdoptLiveHolder: adopting from a holder that is still running ends
// its lease with ErrAdopted (logged at Warn) without touching the node; a
// Locker that adopts its own lease ends the old lease object the same
// way.
func testAdoptLiveHolder(t *testing.T, servers []string) {
	rec := &logRecorder{}
	p := startLocker(t, zookeeper.Config{Servers: servers, SessionTimeout: stableTimeout, Logger: slog.New(rec)})
	b := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const name = "adopt-alive"
	held, err := p.Acquire(ctx, name, lock.WithTTL(time.Minute))
	require.NoError(t, err)
	adopted, err := b.Adopt(ctx, name, held.Token())
	require.NoError(t, err)
	waitDone(t, held, 30*time.Second, "the live holder of an adopted lease")
	assert.ErrorIs(t, held.Err(), lock.ErrAdopted)
	var attrs map[string]any
	eventually(t, 10*time.Second, "the old holder logs the adoption at Warn (just after Done closes)", func() bool {
		var ok bool
		attrs, ok = rec.find(slog.LevelWarn, "lease adopted by another locker", name)
		return ok
	})
	assert.Equal(t, name, attrs["name"])
	assert.Equal(t, held.Token(), attrs["token"])
	assert.Equal(t, zookeeper.HolderID(p), attrs["holder"])
	assert.Equal(t, zookeeper.HolderID(b), attrs["adopter"])
	assert.ErrorIs(t, held.Refresh(ctx), lock.ErrNotHeld)
	assert.ErrorIs(t, held.Release(ctx), lock.ErrNotHeld)
	require.NoError(t, adopted.Refresh(ctx))

	again, err := b.Adopt(ctx, name, adopted.Token())
	require.NoError(t, err, "a Locker may adopt its own lease")
	waitDone(t, adopted, 30*time.Second, "the adopter's old lease object")
	assert.ErrorIs(t, adopted.Err(), lock.ErrAdopted)
	require.NoError(t, again.Refresh(ctx))
	require.NoError(t, again.Release(ctx))
	assert.False(t, inspect(t, b, name).Held)
}

// testAdoptRefused: only a granted, unrevoked TTL lease with the right
// token can be adopted.
func testAdoptRefused(t *testing.T, servers []string) {
	p := newLocker(t, servers, stableTimeout)
	b := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	session, err := p.Acquire(ctx, "adopt-session")
	require.NoError(t, err)
	ttl, err := p.Acquire(ctx, "adopt-ttl", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	raw := rawConn(t, servers)
	_, revokedToken := plant(t, raw, zookeeper.Dir(p, "adopt-revoked"),
		zookeeper.EncodeRecord(zookeeper.Record{TTL: time.Minute, State: zookeeper.StateRevoked, Holder: "gone"}), time.Minute)
	_, queuedToken := plant(t, raw, zookeeper.Dir(p, "adopt-queued"),
		zookeeper.EncodeRecord(zookeeper.Record{TTL: time.Minute, State: zookeeper.StateQueued, Holder: "gone"}), time.Minute)
	for _, c := range []struct {
		what, name string
		token      uint64
	}{
		{"a session lease", "adopt-session", session.Token()},
		{"a wrong token", "adopt-ttl", ttl.Token() + 1},
		{"token 0", "adopt-ttl", 0},
		{"a free name", "adopt-free", ttl.Token()},
		{"a revoked lease", "adopt-revoked", revokedToken},
		{"a claim not granted yet", "adopt-queued", queuedToken},
	} {
		lease, err := b.Adopt(ctx, c.name, c.token)
		assert.ErrorIs(t, err, lock.ErrNotHeld, c.what)
		assert.Nil(t, lease, c.what)
	}
	require.NoError(t, session.Refresh(ctx))
	require.NoError(t, ttl.Refresh(ctx))
	require.NoError(t, session.Release(ctx))
	require.NoError(t, ttl.Release(ctx))
	for _, n := range []string{"adopt-revoked", "adopt-queued"} {
		for _, k := range children(t, p, n) {
			require.NoError(t, raw.Delete(zookeeper.Dir(p, n)+"/"+k, -1))
		}
	}
}

// first returns the message of the first record at level.
func (r *logRecorder) first(level slog.Level) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.Level == level {
			return rec.Message, true
		}
	}
	return "", false
}
