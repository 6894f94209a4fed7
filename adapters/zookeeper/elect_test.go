package zookeeper_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// Elections (issue 17; DESIGN.md, "Elections").

// won is the outcome of a Campaign made in a goroutine; doneBefore says
// whether the Done of the term passed as before was closed when Campaign
// returned.
type won struct {
	term       lock.Term
	err        error
	doneBefore bool
}

func goCampaign(ctx context.Context, e lock.Elector, election, value string, before lock.Lease, opts ...lock.Option) <-chan won {
	out := make(chan won, 1)
	go func() {
		term, err := e.Campaign(ctx, election, value, opts...)
		w := won{term: term, err: err}
		if before != nil {
			select {
			case <-before.Done():
				w.doneBefore = true
			default:
			}
		}
		out <- w
	}()
	return out
}

// elected waits for a Campaign started with goCampaign.
func elected(t *testing.T, ch <-chan won, what string) won {
	t.Helper()
	select {
	case w := <-ch:
		require.NoError(t, w.err, what)
		return w
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not elected within 30s", what)
	}
	panic("unreachable")
}

// notYet checks that a Campaign started with goCampaign has not returned.
func notYet(t *testing.T, ch <-chan won, what string) {
	t.Helper()
	select {
	case w := <-ch:
		t.Fatalf("%s returned: %v", what, w.err)
	default:
	}
}

// nextState is the next state an observer delivers.
func nextState(t *testing.T, ch <-chan lock.LeaderInfo, what string) lock.LeaderInfo {
	t.Helper()
	select {
	case info, ok := <-ch:
		require.True(t, ok, "%s: the channel was closed", what)
		return info
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: nothing observed within 30s", what)
	}
	panic("unreachable")
}

// assertTerm checks that info shows term with value, held by holder's
// Locker.
func assertTerm(t *testing.T, info lock.LeaderInfo, term lock.Term, value string, holder *zookeeper.Locker) {
	t.Helper()
	assert.Equal(t, term.Name(), info.Election, "Election")
	assert.Equal(t, term.Token(), info.Token, "Token")
	assert.Equal(t, value, info.Value, "Value")
	assert.Equal(t, zookeeper.HolderID(holder), info.Holder, "Holder")
	assert.Zero(t, info.Skipped, "Skipped")
}

// assertEmpty checks that info shows election's empty seat.
func assertEmpty(t *testing.T, info lock.LeaderInfo, election string) {
	t.Helper()
	assert.Equal(t, lock.LeaderInfo{Election: election}, info, "the empty seat")
}

// testElectionTerms: candidates from three Lockers are elected one at a
// time, first come first served; a resign hands the seat to the next
// candidate, whose Campaign returns only after the old term's Done
// closed; tokens increase; Leader tells who leads (on the server's
// clock), and ErrNoLeader before the first and after the last term.
func testElectionTerms(t *testing.T, servers []string) {
	a := newLocker(t, servers, stableTimeout)
	b := newLocker(t, servers, stableTimeout)
	c := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const election = "elect-terms"
	_, err := a.Leader(ctx, election)
	require.ErrorIs(t, err, lock.ErrNoLeader, "no candidate yet")

	start := time.Now()
	ta, err := a.Campaign(ctx, election, "a:1")
	require.NoError(t, err)
	info, err := c.Leader(ctx, election)
	require.NoError(t, err)
	assertTerm(t, info, ta, "a:1", a)
	within(t, info.Since, 0, time.Since(start), "Since of a fresh term")
	assert.Equal(t, "a:1", inspect(t, c, election).Owner, "Inspect shows the value as the owner")

	wb := goCampaign(ctx, b, election, "b:1", ta)
	waitWaiters(t, c, election, 1)
	wc := goCampaign(ctx, c, election, "c:1", nil)
	waitWaiters(t, c, election, 2)
	notYet(t, wb, "the second candidate's Campaign while the first leads")

	require.NoError(t, ta.Release(ctx), "resign")
	assert.ErrorIs(t, ta.Err(), lock.ErrReleased)
	gb := elected(t, wb, "the second candidate, after the first resigned")
	assert.True(t, gb.doneBefore, "the old term's Done closed before the next Campaign returned")
	assert.Greater(t, gb.term.Token(), ta.Token(), "tokens of successive terms increase")
	info, err = a.Leader(ctx, election)
	require.NoError(t, err)
	assertTerm(t, info, gb.term, "b:1", b)
	notYet(t, wc, "the third candidate's Campaign while the second leads")

	require.NoError(t, gb.term.Release(ctx))
	gc := elected(t, wc, "the third candidate (FIFO)")
	assert.Greater(t, gc.term.Token(), gb.term.Token())
	require.NoError(t, gc.term.Release(ctx))
	_, err = a.Leader(ctx, election)
	require.ErrorIs(t, err, lock.ErrNoLeader, "every term resigned")
	assert.Empty(t, children(t, a, election), "nothing left behind")
}

// testElectionObserve: an observer sees the empty seat, a term, its
// Proclaim (same token, new value), a resign with a candidate waiting
// (straight to the next term: no empty seat between) and a resign with
// none (the empty seat, Token 0); TTL terms too, whose refreshes change
// no state.
func testElectionObserve(t *testing.T, servers []string) {
	a := newLocker(t, servers, stableTimeout)
	b := newLocker(t, servers, stableTimeout)
	o := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const election = "elect-observe"
	ch, err := o.Observe(ctx, election)
	require.NoError(t, err)
	assertEmpty(t, nextState(t, ch, "the initial state"), election)

	ta, err := a.Campaign(ctx, election, "a:1", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	assertTerm(t, nextState(t, ch, "the first term"), ta, "a:1", a)
	require.NoError(t, ta.Refresh(ctx), "a TTL term's Refresh")
	require.NoError(t, ta.Proclaim(ctx, "a:2"))
	assertTerm(t, nextState(t, ch, "the Proclaim"), ta, "a:2", a)
	info, err := b.Leader(ctx, election)
	require.NoError(t, err)
	assert.Equal(t, "a:2", info.Value, "Leader shows the proclaimed value")

	wb := goCampaign(ctx, b, election, "b:1", ta)
	waitWaiters(t, o, election, 1)
	require.NoError(t, ta.Release(ctx))
	gb := elected(t, wb, "the waiting candidate")
	assertTerm(t, nextState(t, ch, "the hand-off"), gb.term, "b:1", b)

	// A child that is no claim keeps the directory from being reaped: the
	// observer of its empty seat must watch its children (an exists watch
	// on the directory would not fire when a candidate's child appears).
	keep := zookeeper.Dir(o, election) + "/keep"
	_, err = zookeeper.Conn(o).Create(keep, nil, 0, zk.WorldACL(zk.PermAll))
	require.NoError(t, err)
	require.NoError(t, gb.term.Release(ctx))
	assertEmpty(t, nextState(t, ch, "the resign with nobody waiting"), election)
	tk, err := a.Campaign(ctx, election, "a:kept")
	require.NoError(t, err)
	assertTerm(t, nextState(t, ch, "a term in a directory that was empty"), tk, "a:kept", a)
	require.NoError(t, tk.Release(ctx))
	assertEmpty(t, nextState(t, ch, "empty again"), election)
	require.NoError(t, zookeeper.Conn(o).Delete(keep, -1))

	// The seat after the directory was reaped (an empty container goes
	// within the reaper interval): the observer watches for its creation.
	eventually(t, 20*time.Second, "the empty directory is reaped", func() bool {
		ok, _, err := zookeeper.Conn(o).Exists(zookeeper.Dir(o, election))
		return err == nil && !ok
	})
	// The observer waits on an exists watch on the directory's path (a
	// children watch cannot be set on a missing node).
	assertWaits(t, o, "the observer of a reaped directory")
	tc, err := a.Campaign(ctx, election, "a:3")
	require.NoError(t, err)
	assertTerm(t, nextState(t, ch, "a term after the directory was reaped"), tc, "a:3", a)
	require.NoError(t, tc.Release(ctx))
	assertEmpty(t, nextState(t, ch, "the last resign"), election)
	select {
	case info := <-ch:
		t.Fatalf("a state nobody made: %+v", info)
	default:
	}
}

// testObserveWaits: an observer of an election with no directory, and
// one with an empty directory, waits on a watch instead of reading again
// and again; a candidate's child in the new, or the empty, directory is
// seen.
func testObserveWaits(t *testing.T, servers []string) {
	a := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	for _, dir := range []string{"missing", "empty"} {
		t.Run(dir, func(t *testing.T) {
			o := newLocker(t, servers, stableTimeout)
			election := "elect-waits-" + dir
			path := zookeeper.Dir(o, election)
			if dir == "empty" { // a persistent one: no reaper takes it meanwhile
				_, err := zookeeper.Conn(o).Create(path, nil, 0, zk.WorldACL(zk.PermAll))
				require.NoError(t, err)
				t.Cleanup(func() { _ = zookeeper.Conn(a).Delete(path, -1) })
			}
			ch, err := o.Observe(ctx, election)
			require.NoError(t, err)
			assertEmpty(t, nextState(t, ch, "the initial state"), election)
			assertWaits(t, o, "the observer of a directory that is "+dir)
			term, err := a.Campaign(ctx, election, "a")
			require.NoError(t, err)
			assertTerm(t, nextState(t, ch, "a term in the directory that was "+dir), term, "a", a)
			require.NoError(t, term.Release(ctx))
			assertEmpty(t, nextState(t, ch, "the resign"), election)
		})
	}
}

// testProclaimRacesRefresh: a Refresh of a TTL term sent while its
// Proclaim's SetData was acknowledged but not yet recorded by the lease
// (a hook holds the Proclaim there) does not overwrite the Proclaim: the
// node keeps the proclaimed value, and so does a later Refresh.
func testProclaimRacesRefresh(t *testing.T, servers []string) {
	a := newLocker(t, servers, stableTimeout)
	o := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const election = "elect-proclaim-race"
	term, err := a.Campaign(ctx, election, "a:1", lock.WithTTL(time.Minute))
	require.NoError(t, err)

	var (
		held      atomic.Bool
		refreshed = make(chan error, 1)
		waits     = make(chan struct{}, 1)
	)
	zookeeper.SetWriteHooks(a, func() {
		if !held.CompareAndSwap(false, true) {
			return // the Refresh's own write
		}
		// The Proclaim's SetData is acknowledged: refresh now, and let the
		// Proclaim go on once the Refresh is done or waits for its turn.
		go func() { refreshed <- term.Refresh(ctx) }()
		select {
		case err := <-refreshed:
			refreshed <- err
		case <-waits:
		case <-ctx.Done():
		}
	}, func() {
		select {
		case waits <- struct{}{}:
		default:
		}
	})
	require.NoError(t, term.Proclaim(ctx, "a:2"))
	require.NoError(t, <-refreshed, "the racing Refresh")
	require.True(t, held.Load(), "the hook held the Proclaim")
	info, err := o.Leader(ctx, election)
	require.NoError(t, err)
	assert.Equal(t, "a:2", info.Value, "the Proclaim that returned nil is in the node")
	require.NoError(t, term.Refresh(ctx))
	info, err = o.Leader(ctx, election)
	require.NoError(t, err)
	assert.Equal(t, "a:2", info.Value, "a later Refresh keeps the proclaimed value")
	require.NoError(t, term.Release(ctx))
}

// testAdoptTerm: an adopted TTL term is a lock.Term: the adopter can
// Proclaim (the old term ends with ErrAdopted) and its Release resigns;
// an adopted mutex lease is no Term.
func testAdoptTerm(t *testing.T, servers []string) {
	a := newLocker(t, servers, stableTimeout)
	b := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const election = "elect-adopt"
	old, err := a.Campaign(ctx, election, "a:1", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	adopted, err := b.Adopt(ctx, election, old.Token())
	require.NoError(t, err)
	term, ok := adopted.(lock.Term)
	require.True(t, ok, "an adopted term is a lock.Term, got %T", adopted)
	waitDone(t, old, 30*time.Second, "the adopted term")
	assert.ErrorIs(t, old.Err(), lock.ErrAdopted)

	require.NoError(t, term.Proclaim(ctx, "b:2"))
	info, err := a.Leader(ctx, election)
	require.NoError(t, err)
	assertTerm(t, info, term, "b:2", b)
	require.NoError(t, term.Release(ctx))
	select {
	case <-term.Done():
	default:
		t.Fatal("Release returned with the term's Done open")
	}
	assert.ErrorIs(t, term.Err(), lock.ErrReleased)
	_, err = a.Leader(ctx, election)
	require.ErrorIs(t, err, lock.ErrNoLeader, "the adopter resigned")

	held, err := a.Acquire(ctx, "elect-adopt-mutex", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	le, err := b.Adopt(ctx, "elect-adopt-mutex", held.Token())
	require.NoError(t, err)
	_, ok = le.(lock.Term)
	assert.False(t, ok, "an adopted mutex lease is no Term")
	require.NoError(t, le.Release(ctx))
}

// assertWaits checks that o's one observer, whose seat does not change,
// waits: once its watch is set it reads the seat at most once more (the
// read after arming) over a quiet second, where a polling observer reads
// at network speed.
func assertWaits(t *testing.T, o *zookeeper.Locker, what string) {
	t.Helper()
	eventually(t, 20*time.Second, what+": its watch is set", func() bool {
		return watchChannels(t, zookeeper.Conn(o)) == 1
	})
	before := zookeeper.SeatReads(o)
	<-time.After(time.Second) // the quiet period: nothing changes the seat
	assert.LessOrEqual(t, zookeeper.SeatReads(o)-before, int64(1), "%s: reads of an unchanged seat", what)
}

// testElectionHolderClosed: the leader's Locker is closed; its term ends
// (ErrReleased) and the waiting candidate is elected, which the observer
// sees; with nobody waiting, the observer sees the empty seat.
func testElectionHolderClosed(t *testing.T, servers []string) {
	a := newLocker(t, servers, stableTimeout)
	b := newLocker(t, servers, stableTimeout)
	o := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const election = "elect-closed"
	ch, err := o.Observe(ctx, election)
	require.NoError(t, err)
	assertEmpty(t, nextState(t, ch, "the initial state"), election)
	ta, err := a.Campaign(ctx, election, "a")
	require.NoError(t, err)
	assertTerm(t, nextState(t, ch, "a's term"), ta, "a", a)
	wb := goCampaign(ctx, b, election, "b", ta)
	waitWaiters(t, o, election, 1)

	require.NoError(t, a.Close())
	assert.ErrorIs(t, ta.Err(), lock.ErrReleased)
	gb := elected(t, wb, "the candidate behind a closed Locker's term")
	assert.True(t, gb.doneBefore)
	assertTerm(t, nextState(t, ch, "b's term"), gb.term, "b", b)
	require.NoError(t, b.Close())
	assertEmpty(t, nextState(t, ch, "nobody left"), election)
}

// testElectionSessionExpiry: the leader's connection is cut until the
// server expires its session. Its Done closes (ErrLost) before the
// waiting candidate is elected, and the observer sees the new term.
func testElectionSessionExpiry(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	gl, g := newGatedLocker(t, servers, faultTimeout)
	b := newLocker(t, servers, stableTimeout)
	o := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const election = "elect-expiry"
	ta, err := gl.Campaign(ctx, election, "a")
	require.NoError(t, err)
	ch, err := o.Observe(ctx, election)
	require.NoError(t, err)
	assertTerm(t, nextState(t, ch, "the term"), ta, "a", gl)
	wb := goCampaign(ctx, b, election, "b", ta)
	waitWaiters(t, o, election, 1)

	g.Cut()
	waitDone(t, ta, 10*time.Second, "leader after its connection was cut")
	assert.ErrorIs(t, ta.Err(), lock.ErrLost)
	gb := elected(t, wb, "the candidate, once the server expired the leader's session")
	assert.True(t, gb.doneBefore, "the lost term's Done closed before the next term began (I3)")
	assertTerm(t, nextState(t, ch, "the next term"), gb.term, "b", b)
	g.Heal()
	require.ErrorIs(t, ta.Proclaim(ctx, "late"), lock.ErrNotHeld, "Proclaim of a lost term")
	require.NoError(t, gb.term.Release(ctx))
	assertEmpty(t, nextState(t, ch, "the resign"), election)
}

// testObserveEnds: the channel is closed when the observer's ctx ends and
// when its Locker is closed; a closed Locker refuses Observe.
func testObserveEnds(t *testing.T, servers []string) {
	o := newLocker(t, servers, stableTimeout)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := o.Observe(ctx, "elect-ends")
	require.NoError(t, err)
	assertEmpty(t, nextState(t, ch, "the initial state"), "elect-ends")
	cancel()
	assertClosed(t, ch, "the ctx ended")

	ch, err = o.Observe(ctxFor(t, time.Minute), "elect-ends")
	require.NoError(t, err)
	require.NoError(t, o.Close())
	assertClosed(t, ch, "the Locker was closed")
	_, err = o.Observe(ctxFor(t, time.Minute), "elect-ends")
	assert.ErrorIs(t, err, lock.ErrClosed)
}

// assertClosed waits until ch is closed, taking what it still delivers.
func assertClosed(t *testing.T, ch <-chan lock.LeaderInfo, why string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("the channel is not closed within 30s after %s", why)
		}
	}
}

// testObserveSlowReader: a reader that does not read while 65 states are
// delivered finds one: the latest, with Skipped 64 (the initial state and
// 63 Proclaims it replaced).
func testObserveSlowReader(t *testing.T, servers []string) {
	l := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const election = "elect-slow"
	ta, err := l.Campaign(ctx, election, "v0")
	require.NoError(t, err)
	ch, err := l.Observe(ctx, election)
	require.NoError(t, err)
	eventually(t, 20*time.Second, "the initial state is delivered", func() bool { return len(ch) == 1 })
	for i := 1; i < 64; i++ { // one state at a time: each is delivered, none coalesced
		require.NoError(t, ta.Proclaim(ctx, fmt.Sprintf("v%d", i)))
		eventually(t, 20*time.Second, fmt.Sprintf("Proclaim %d is delivered", i), func() bool { return len(ch) == i+1 })
	}
	require.NoError(t, ta.Proclaim(ctx, "v64"))
	eventually(t, 20*time.Second, "the full buffer collapses to the latest state", func() bool { return len(ch) == 1 })
	info := nextState(t, ch, "the collapsed state")
	assert.Equal(t, "v64", info.Value, "the latest state")
	assert.Equal(t, 64, info.Skipped, "the initial state and 63 Proclaims replaced")
	assert.Equal(t, ta.Token(), info.Token)
	require.NoError(t, ta.Release(ctx))
	info = nextState(t, ch, "the resign")
	assert.False(t, info.Elected())
	assert.Zero(t, info.Skipped, "a reader that keeps up skips nothing")
}

// testElectionTypeMismatch: a name lives as one type at a time. A
// Campaign on a held (or queued) mutex fails with ErrInvalidOption naming
// both types and leaves no node; an Acquire or TryAcquire on an election
// fails the same way; Leader of a mutex is ErrInvalidOption, and Observe
// shows its seat empty until it is an election. A child of an older
// version (no type) counts as a mutex, and every child ahead is checked,
// not only the lowest.
func testElectionTypeMismatch(t *testing.T, servers []string) {
	l := newLocker(t, servers, stableTimeout)
	o := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const name = "elect-type"
	held, err := l.Acquire(ctx, name)
	require.NoError(t, err)
	ch, err := o.Observe(ctx, name)
	require.NoError(t, err)
	assertEmpty(t, nextState(t, ch, "a mutex's seat"), name)

	_, err = o.Campaign(ctx, name, "v")
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	assert.Contains(t, err.Error(), "lives as a mutex, asked as an election")
	assert.Len(t, children(t, o, name), 1, "the refused candidate's node is gone")
	_, err = o.Leader(ctx, name)
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	assert.Contains(t, err.Error(), "a mutex")

	require.NoError(t, held.Release(ctx))
	// The other way: an election lives; a mutex is refused.
	term, err := o.Campaign(ctx, name, "v")
	require.NoError(t, err)
	info := nextState(t, ch, "the election")
	assertTerm(t, info, term, "v", o)
	for _, try := range []bool{false, true} {
		var err error
		if try {
			_, err = l.TryAcquire(ctx, name)
		} else {
			_, err = l.Acquire(ctx, name)
		}
		require.ErrorIs(t, err, lock.ErrInvalidOption, "TryAcquire %v", try)
		assert.Contains(t, err.Error(), "lives as an election, asked as a mutex")
		assert.NotErrorIs(t, err, lock.ErrHeld)
	}
	assert.Len(t, children(t, o, name), 1, "the refused mutex claims' nodes are gone")
	require.NoError(t, term.Release(ctx))
	assertEmpty(t, nextState(t, ch, "the resign"), name)

	// An older version's claim (no type token in its name; data format 1
	// or 2) is a mutex, and every child ahead is checked, not only the
	// lowest: behind a term, an older Locker's mutex claim (which does not
	// check) makes the next candidate fail.
	old := rawConn(t, servers)
	for _, data := range [][]byte{
		{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'o'},
		zookeeper.EncodeRecord(zookeeper.Record{Holder: "older", Owner: "o"}),
	} {
		term, err := o.Campaign(ctx, name, "v")
		require.NoError(t, err)
		path, _ := plant(t, old, zookeeper.Dir(l, name), data, 0)
		_, err = l.Campaign(ctx, name, "w")
		require.ErrorIs(t, err, lock.ErrInvalidOption, "format %d behind a term", data[0])
		require.NoError(t, term.Release(ctx))
		_, err = l.Campaign(ctx, name, "w")
		require.ErrorIs(t, err, lock.ErrInvalidOption, "format %d alone", data[0])
		require.NoError(t, old.Delete(path, -1))
	}
	term, err = o.Campaign(ctx, name, "v2")
	require.NoError(t, err, "once the name is free it may be an election")
	require.NoError(t, term.Release(ctx))
}

// testElectionBadInputs: bad names and values fail before any I/O; a
// resigned term's Proclaim is ErrNotHeld; a closed Locker refuses every
// call.
func testElectionBadInputs(t *testing.T, servers []string) {
	l := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	_, err := l.Campaign(ctx, "", "v")
	assert.ErrorIs(t, err, lock.ErrInvalidName)
	_, err = l.Leader(ctx, "a\x00b")
	assert.ErrorIs(t, err, lock.ErrInvalidName)
	_, err = l.Observe(ctx, strings.Repeat("n", lock.MaxNameLen+1))
	assert.ErrorIs(t, err, lock.ErrInvalidName)
	_, err = l.Campaign(ctx, "elect-bad", "a\xffb")
	assert.ErrorIs(t, err, lock.ErrInvalidOption, "a value that is not UTF-8")
	_, err = l.Campaign(ctx, "elect-bad", strings.Repeat("v", lock.MaxOwnerLen+1))
	assert.ErrorIs(t, err, lock.ErrInvalidOption, "a value too long")
	_, err = l.Campaign(ctx, "elect-bad", "v", lock.WithTTL(time.Millisecond))
	assert.ErrorIs(t, err, lock.ErrInvalidOption, "a TTL too short")
	assert.Empty(t, children(t, l, "elect-bad"), "nothing was created")

	term, err := l.Campaign(ctx, "elect-bad", "v")
	require.NoError(t, err)
	assert.ErrorIs(t, term.Proclaim(ctx, "a\xffb"), lock.ErrInvalidOption)
	require.NoError(t, term.Release(ctx))
	assert.ErrorIs(t, term.Proclaim(ctx, "w"), lock.ErrNotHeld, "Proclaim after the resign")
	assert.ErrorIs(t, term.Release(ctx), lock.ErrNotHeld, "a second resign")

	require.NoError(t, l.Close())
	_, err = l.Campaign(ctx, "elect-bad", "v")
	assert.ErrorIs(t, err, lock.ErrClosed)
	_, err = l.Leader(ctx, "elect-bad")
	assert.ErrorIs(t, err, lock.ErrClosed)
}

// testObserveAcrossExpiry: the observer's own session expires while the
// leader resigns to a waiting candidate. Nothing is delivered while its
// connection is cut (no guess); once it is back, on a new session, the
// observer reads again and delivers the new term.
func testObserveAcrossExpiry(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	a := newLocker(t, servers, stableTimeout)
	b := newLocker(t, servers, stableTimeout)
	gl, g := newGatedLocker(t, servers, faultTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const election, marker = "observe-expiry", "observe-expiry-marker"
	ta, err := a.Campaign(ctx, election, "a")
	require.NoError(t, err)
	ch, err := gl.Observe(ctx, election)
	require.NoError(t, err)
	assertTerm(t, nextState(t, ch, "the term"), ta, "a", a)
	// A session lease of the observer's Locker tells when the server has
	// expired its session: its node goes.
	_, err = gl.Acquire(ctx, marker)
	require.NoError(t, err)
	wb := goCampaign(ctx, b, election, "b", ta)
	waitWaiters(t, a, election, 1)

	g.Cut()
	require.NoError(t, ta.Release(ctx))
	gb := elected(t, wb, "the waiting candidate")
	eventually(t, 20*time.Second, "the server expired the observer's session", func() bool {
		return len(children(t, a, marker)) == 0
	})
	select {
	case info := <-ch:
		t.Fatalf("delivered while the observer's connection was cut: %+v", info)
	default:
	}
	g.Heal()
	assertTerm(t, nextState(t, ch, "the term that began while the observer's session expired"), gb.term, "b", b)
	require.NoError(t, gb.term.Release(ctx))
	assertEmpty(t, nextState(t, ch, "the resign, on the observer's new session"), election)
}

// testObserveSince: a state's Since is the age of the term on the
// server's clock, also for an observer that starts long after the term
// began.
func testObserveSince(t *testing.T, servers []string) {
	l := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	const election, age = "observe-since", 500 * time.Millisecond
	before := time.Now()
	term, err := l.Campaign(ctx, election, "v")
	require.NoError(t, err)
	elected := time.Now()
	waitPast(t, elected, age)
	ch, err := l.Observe(ctx, election)
	require.NoError(t, err)
	info := nextState(t, ch, "the term")
	assertTerm(t, info, term, "v", l)
	within(t, info.Since, age, time.Since(before), "Since of a term observed late")
	require.NoError(t, term.Release(ctx))
}
