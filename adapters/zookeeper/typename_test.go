package zookeeper_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/lock"
)

// The type in the child's name (DESIGN.md, "The type in the child's
// name").
var (
	// mutexChild is a mutex's child name, unchanged since the first version.
	mutexChild = regexp.MustCompile(`^_c_[0-9a-f]{32}-lock-[0-9]{10}$`)
	// electionChild is a candidate's: the type token E_ in the id.
	electionChild = regexp.MustCompile(`^_c_E_[0-9a-f]{30}-lock-[0-9]{10}$`)
	// olderGrammar is what every earlier version parses as a claim (names.go,
	// parseChild: the prefix, 32 characters it does not interpret, the
	// marker, the sequence); a child that does not fit is invisible to it.
	olderGrammar = regexp.MustCompile(`^_c_.{32}-lock-[0-9]+$`)
)

// testElectionChildNames: a mutex's child keeps its name exactly; a
// candidate's child carries the election's token in its id and still
// fits the grammar older versions parse, so they queue behind it; its
// data is format 2 (no type), the term's value in the owner field.
func testElectionChildNames(t *testing.T, servers []string) {
	l := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	const name = "child-names"

	lease, err := l.Acquire(ctx, name)
	require.NoError(t, err)
	kids := children(t, l, name)
	require.Len(t, kids, 1)
	assert.Regexp(t, mutexChild, kids[0], "a mutex's child keeps today's name")
	require.NoError(t, lease.Release(ctx))

	for _, opts := range [][]lock.Option{nil, {lock.WithTTL(time.Minute)}} {
		term, err := l.Campaign(ctx, name, "the value", opts...)
		require.NoError(t, err)
		kids := children(t, l, name)
		require.Len(t, kids, 1)
		assert.Regexp(t, electionChild, kids[0], "a candidate's child carries E_")
		assert.Regexp(t, olderGrammar, kids[0], "older versions see a candidate's child as a claim")
		data, _, err := zookeeper.Conn(l).Get(zookeeper.Dir(l, name) + "/" + kids[0])
		require.NoError(t, err)
		rec, err := zookeeper.DecodeRecord(data)
		require.NoError(t, err)
		assert.Equal(t, 2, rec.Format, "the type is not in the data")
		assert.Equal(t, "the value", rec.Owner)
		require.NoError(t, term.Release(ctx))
	}
}

// testChildTypeInterop: the type check reads names, of children written
// by any version. A child named as an older version names it (no token:
// a mutex, whatever its data) refuses a candidate behind it; a child
// named as a candidate (a term whose Locker is another process of this
// version) refuses a mutex claim behind it; a child of a type this
// version does not know (a later version's type, "X3_") refuses
// both, naming its id; and the claims of the matching type queue behind
// them and are granted in turn.
func testChildTypeInterop(t *testing.T, servers []string) {
	l := newLocker(t, servers, stableTimeout)
	raw := rawConn(t, servers)
	ctx := ctxFor(t, 2*time.Minute)
	const name = "child-interop"
	dir := zookeeper.Dir(l, name)
	record := zookeeper.EncodeRecord(zookeeper.Record{Holder: "other", Owner: "o"})
	acl := zk.WorldACL(zk.PermAll)

	// An older mutex child, formats 1 and 2 of its data.
	for _, data := range [][]byte{{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'o'}, record} {
		path := plantID(t, raw, dir, newGUID(t), data, acl)
		_, err := l.Campaign(ctx, name, "v")
		require.ErrorIs(t, err, lock.ErrInvalidOption, "format %d", data[0])
		assert.Contains(t, err.Error(), "lives as a mutex, asked as an election")
		waiter := goAcquire(ctx, l, name)
		require.NoError(t, raw.Delete(path, -1))
		g := <-waiter
		require.NoError(t, g.err, "a mutex claim queues behind an older mutex child")
		require.NoError(t, g.lease.Release(ctx))
	}

	// A candidate's child planted by name, with format-2 data.
	path := plantID(t, raw, dir, "E_"+newGUID(t)[:30], record, acl)
	for _, try := range []bool{false, true} {
		var err error
		if try {
			_, err = l.TryAcquire(ctx, name)
		} else {
			_, err = l.Acquire(ctx, name)
		}
		require.ErrorIs(t, err, lock.ErrInvalidOption, "TryAcquire %v", try)
		assert.Contains(t, err.Error(), "lives as an election, asked as a mutex")
	}
	info, err := l.Leader(ctx, name)
	require.NoError(t, err, "a head named as a candidate is a term")
	assert.Equal(t, "o", info.Value)
	require.NoError(t, raw.Delete(path, -1))

	// A type this version does not know.
	unknown := "X3_" + newGUID(t)[:29]
	path = plantID(t, raw, dir, unknown, record, acl)
	_, err = l.Acquire(ctx, name)
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	assert.Contains(t, err.Error(), "lives as a type this version does not know")
	assert.Contains(t, err.Error(), unknown)
	_, err = l.Campaign(ctx, name, "v")
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	assert.Contains(t, err.Error(), "asked as an election")
	_, err = l.Leader(ctx, name)
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	assert.Len(t, children(t, l, name), 1, "the refused claims' nodes are gone")
	require.NoError(t, raw.Delete(path, -1))

	lease, err := l.Acquire(ctx, name)
	require.NoError(t, err, "once the name is free it may be a mutex")
	require.NoError(t, lease.Release(ctx))
}

// testMutexCheckReadsNothing: a mutex claim behind N children checks their
// types without reading them. The N children are planted with an ACL
// that lets nobody read them (a getData of one fails with NoAuth, which
// fails the claim), then one readable child, the claim's predecessor,
// whose data the claim's watch reads (GetW, as the recipe always did).
// The claim must queue (its watch on the predecessor registered: the
// check is behind it) and be granted once they are gone. Before the type
// moved into names the claim read every child ahead and failed with
// NoAuth at the first.
func testMutexCheckReadsNothing(t *testing.T, servers []string) {
	const n = 8
	l := newLocker(t, servers, stableTimeout)
	raw := rawConn(t, servers)
	ctx := ctxFor(t, time.Minute)
	const name = "check-reads-nothing"
	dir := zookeeper.Dir(l, name)
	record := zookeeper.EncodeRecord(zookeeper.Record{Holder: "other"})
	unreadable := zk.WorldACL(zk.PermAll &^ zk.PermRead)
	var planted []string
	for range n {
		planted = append(planted, plantID(t, raw, dir, newGUID(t), record, unreadable))
	}
	_, _, err := raw.Get(planted[0])
	require.ErrorIs(t, err, zk.ErrNoAuth, "the planted children cannot be read")
	planted = append(planted, plantID(t, raw, dir, newGUID(t), record, zk.WorldACL(zk.PermAll)))

	waiter := goAcquire(ctx, l, name)
	queued := func() bool { return watchChannels(t, zookeeper.Conn(l)) > 0 }
	eventually(t, 30*time.Second, "the claim watches its predecessor, or returns", func() bool {
		return queued() || len(waiter) > 0
	})
	select {
	case g := <-waiter:
		t.Fatalf("the claim returned before its predecessor went: lease %v, error %v", g.lease, g.err)
	default:
	}
	assert.Len(t, children(t, l, name), n+2, "the claim queued behind every planted child")
	for _, p := range planted {
		require.NoError(t, raw.Delete(p, -1))
	}
	g := <-waiter
	require.NoError(t, g.err)
	require.NoError(t, g.lease.Release(ctx))
}

// plantID creates a child of dir named with the given id, as another
// process would (the root and the directory made first if missing), with
// data and acl; it returns its path.
func plantID(t *testing.T, conn *zk.Conn, dir, id string, data []byte, acl []zk.ACL) string {
	t.Helper()
	all := zk.WorldACL(zk.PermAll)
	if _, err := conn.Create(dir[:strings.LastIndexByte(dir, '/')], nil, zk.FlagPersistent, all); !errors.Is(err, zk.ErrNodeExists) {
		require.NoError(t, err)
	}
	for attempt := 0; ; attempt++ {
		if _, err := conn.CreateContainer(dir, nil, zk.FlagContainer, all); !errors.Is(err, zk.ErrNodeExists) {
			require.NoError(t, err)
		}
		path, err := conn.Create(dir+"/"+zookeeper.ChildPrefix(id), data, zk.FlagEphemeralSequential, acl)
		if errors.Is(err, zk.ErrNoNode) && attempt < 10 {
			continue // the server reaped the empty container meanwhile
		}
		require.NoError(t, err)
		return path
	}
}
