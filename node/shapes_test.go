package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// TestTerm_ResignClosesDoneFirst: a term's Release ends it here (Done
// closed, ErrReleased) before the store applies the release, so the
// holder stops trusting it before anyone else can be elected (lock.Term).
// The node's applies are held back: the term's Done must close while the
// state still shows it held.
func TestTerm_ResignClosesDoneFirst(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	term, err := n.Elector().Campaign(ctx, "e", "v1")
	require.NoError(t, err)

	release := HoldApplies(n)
	defer release()
	resigned := make(chan error, 1)
	go func() { resigned <- term.Release(ctx) }()
	select {
	case <-term.Done():
	case <-ctx.Done():
		t.Fatal("the term's Done did not close while its release was held back")
	}
	assert.ErrorIs(t, term.Err(), lock.ErrReleased)
	held, err := n.InspectLocal("e")
	require.NoError(t, err)
	assert.True(t, held.Held, "the store has not applied the release yet")
	release()
	require.NoError(t, <-resigned)
	_, err = n.Elector().Leader(ctx, "e")
	assert.ErrorIs(t, err, lock.ErrNoLeader)
	assert.ErrorIs(t, term.Release(ctx), lock.ErrNotHeld, "a second resign")
}

// TestObserve_SlowReaderCollapses: an observer whose reader takes nothing
// while 100 values are proclaimed keeps at most observeRing states; what
// it then delivers ends with the latest state, and every state offered is
// either delivered or counted in a later state's Skipped.
func TestObserve_SlowReaderCollapses(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	e := n.Elector()
	term, err := e.Campaign(ctx, "e", "v-1")
	require.NoError(t, err)
	states, err := e.Observe(ctx, "e")
	require.NoError(t, err)
	const proclaims = 100
	for i := range proclaims {
		require.NoError(t, term.Proclaim(ctx, "v"+strconv.Itoa(i)))
	}
	accounted, skipped, last := 0, 0, lock.LeaderInfo{}
	for last.Value != "v"+strconv.Itoa(proclaims-1) {
		select {
		case last = <-states:
			accounted += 1 + last.Skipped
			skipped += last.Skipped
		case <-ctx.Done():
			t.Fatalf("the latest state never came; last %+v", last)
		}
	}
	assert.Equal(t, 1+proclaims, accounted, "the first state and every proclaim, delivered or skipped")
	assert.Positive(t, skipped, "a reader behind the ring is told what it missed")
	assert.Equal(t, term.Token(), last.Token)
	require.NoError(t, term.Release(ctx))
}

// TestObserve_ClosesWithItsLocker: an Observe channel closes when its
// Locker closes, and when the node stops (the default client's).
func TestObserve_ClosesWithItsLocker(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	l, err := n.NewLocker(ctx)
	require.NoError(t, err)
	fromLocker, err := l.(lock.Elector).Observe(context.Background(), "e")
	require.NoError(t, err)
	fromNode, err := n.Elector().Observe(context.Background(), "e")
	require.NoError(t, err)
	first := <-fromLocker
	assert.False(t, first.Elected(), "an empty seat first")
	<-fromNode

	require.NoError(t, l.Close())
	drained(t, ctx, fromLocker)
	_, err = l.(lock.Elector).Observe(ctx, "e")
	assert.ErrorIs(t, err, lock.ErrClosed)
	require.NoError(t, n.Close())
	drained(t, ctx, fromNode)
}

// drained waits for ch to close.
func drained(t *testing.T, ctx context.Context, ch <-chan lock.LeaderInfo) {
	t.Helper()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-ctx.Done():
			t.Fatal("the Observe channel did not close")
		}
	}
}

// TestObserve_SnapshotInstall: a restored state fires no events, so the
// bridge hands every observed name's state to its observers after a
// Restore: an observer of an empty seat learns of the term the snapshot
// holds.
func TestObserve_SnapshotInstall(t *testing.T) {
	src := fsm.New()
	cmds := []*fsmpb.Command{
		{Op: &fsmpb.Command_SetProtocol{SetProtocol: &fsmpb.SetProtocol{Level: fsm.Protocol}}},
		{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{Req: &fsmpb.Request{Session: 2, Seq: 1}, TtlNs: int64(time.Minute), Node: "n1"}}},
		{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
			Req: &fsmpb.Request{Session: 2, Seq: 2}, Name: "e", Type: fsmpb.LockType_LOCK_TYPE_ELECTION, Value: "leader-1",
		}}},
	}
	for i, cmd := range cmds {
		res, _, err := src.Apply(uint64(i+1), cmd)
		require.NoError(t, err)
		require.NotContains(t, []fsmpb.Code{fsmpb.Code_CODE_INVALID, fsmpb.Code_CODE_UNKNOWN_SESSION}, res.GetCode(), "command %d", i)
	}
	require.True(t, src.Lock("e").Held, "the source state holds the term")
	data, err := src.Snapshot()
	require.NoError(t, err)
	framed := append(binary.BigEndian.AppendUint64(nil, uint64(len(cmds))), data...)

	b := newBridge(func([]fsm.Event) {}, nil, func(error) {})
	b.observed = newObservers(time.Now)
	o := &observer{name: "e", wake: make(chan struct{}, 1)}
	b.readAges(func(st *fsm.State, a *ages) { b.observed.add(o, st, a) })
	require.NoError(t, b.Restore(io.NopCloser(strings.NewReader(string(framed)))))

	first, ok := o.next()
	require.True(t, ok)
	assert.False(t, first.Elected(), "the seat before the install")
	after, ok := o.next()
	require.True(t, ok, "the install is observed")
	assert.Equal(t, "leader-1", after.Value)
	assert.Equal(t, src.Lock("e").Token, after.Token)
	_, more := o.next()
	assert.False(t, more)
}

// TestKeyed_MismatchIsInvalidOption: a client session's Acquire (a mutex)
// of a name that lives as an election fails with ErrInvalidOption naming
// both types, as a Locker's does.
func TestKeyed_MismatchIsInvalidOption(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	term, err := n.Elector().Campaign(ctx, "e", "v")
	require.NoError(t, err)
	_, err = n.TryAcquireKeyed(ctx, "e", lock.WithTTL(time.Minute))
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	assert.Contains(t, err.Error(), "an election, asked as a mutex")
	_, err = n.TryAcquire(ctx, "e")
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	assert.Contains(t, err.Error(), "an election, asked as a mutex")
	require.NoError(t, term.Release(ctx))
}

// TestAdopt_KeepsTheType: an adopted term is a Term (it can proclaim), an
// adopted permit a Permit with its slot.
func TestAdopt_KeepsTheType(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	other, err := n.NewLocker(ctx)
	require.NoError(t, err)
	defer func() { assert.NoError(t, other.Close()) }()

	term, err := n.Elector().Campaign(ctx, "e", "v1", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	adopted, err := other.(lock.Adopter).Adopt(ctx, "e", term.Token())
	require.NoError(t, err)
	require.Implements(t, (*lock.Term)(nil), adopted)
	require.NoError(t, adopted.(lock.Term).Proclaim(ctx, "v2"))
	info, err := n.Elector().Leader(ctx, "e")
	require.NoError(t, err)
	assert.Equal(t, "v2", info.Value)
	require.NoError(t, adopted.Release(ctx))

	sem := lock.Semaphores(n)
	p0, err := sem.AcquirePermit(ctx, "s", 2, lock.WithTTL(time.Minute))
	require.NoError(t, err)
	p1, err := sem.AcquirePermit(ctx, "s", 2, lock.WithTTL(time.Minute))
	require.NoError(t, err)
	got, err := other.(lock.Adopter).Adopt(ctx, "s", p1.Token())
	require.NoError(t, err)
	require.Implements(t, (*lock.Permit)(nil), got)
	assert.Equal(t, p1.Slot(), got.(lock.Permit).Slot())
	assert.NotEqual(t, p0.Slot(), p1.Slot())
	require.NoError(t, got.Release(ctx))
	require.NoError(t, p0.Release(ctx))
}

// TestInspect_ReportsEveryHolder: Inspect of a semaphore, a read-write
// lock and an election reports the type, the limit and every held lease
// (token, slot, mode, value), the top-level fields describing the first;
// a mutex reports its type and no Holders list; a waiter its mode.
func TestInspect_ReportsEveryHolder(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	p0, err := n.AcquirePermit(ctx, "s", 3, lock.WithOwner("a"))
	require.NoError(t, err)
	p1, err := n.AcquirePermit(ctx, "s", 3, lock.WithOwner("b"), lock.WithTTL(time.Minute))
	require.NoError(t, err)
	info, err := n.Inspect(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, lock.TypeSemaphore, info.Type)
	assert.Equal(t, 3, info.Limit)
	assert.Equal(t, p0.Token(), info.Token, "the top-level fields are the first holder's")
	require.Len(t, info.Holders, 2)
	assert.Equal(t, []uint64{p0.Token(), p1.Token()}, []uint64{info.Holders[0].Token, info.Holders[1].Token})
	assert.Equal(t, []int{p0.Slot(), p1.Slot()}, []int{info.Holders[0].Slot, info.Holders[1].Slot})
	assert.Equal(t, lock.KindSession, info.Holders[0].Kind)
	assert.Equal(t, lock.KindTTL, info.Holders[1].Kind)
	assert.Positive(t, info.Holders[1].ExpiresIn)
	assert.Equal(t, "b", info.Holders[1].Owner)

	r, err := n.AcquireRead(ctx, "rw")
	require.NoError(t, err)
	waiting := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _, err := n.AcquireWrite(wctx, "rw"); waiting <- err }()
	waitFor(t, func() bool { i, _ := n.InspectLocal("rw", lock.WithQueueLimit(5)); return i.Waiters == 1 })
	info, err = n.Inspect(ctx, "rw", lock.WithQueueLimit(5))
	require.NoError(t, err)
	assert.Equal(t, lock.TypeReadWrite, info.Type)
	require.Len(t, info.Holders, 1)
	assert.Equal(t, lock.ModeRead, info.Holders[0].Mode)
	require.Len(t, info.Queue, 1)
	assert.Equal(t, lock.ModeWrite, info.Queue[0].Mode)
	cancel()
	assert.ErrorIs(t, <-waiting, context.Canceled)

	term, err := n.Elector().Campaign(ctx, "e", "here")
	require.NoError(t, err)
	info, err = n.Inspect(ctx, "e")
	require.NoError(t, err)
	assert.Equal(t, lock.TypeElection, info.Type)
	require.Len(t, info.Holders, 1)
	assert.Equal(t, "here", info.Holders[0].Value)
	assert.Equal(t, term.Token(), info.Holders[0].Token)

	m, err := n.Acquire(ctx, "m")
	require.NoError(t, err)
	info, err = n.Inspect(ctx, "m")
	require.NoError(t, err)
	assert.Equal(t, lock.TypeMutex, info.Type)
	assert.Nil(t, info.Holders)
	assert.Equal(t, m.Token(), info.Token)
	for _, l := range []lock.Lease{p0, p1, r, term, m} {
		require.NoError(t, l.Release(ctx))
	}
	info, err = n.Inspect(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, lock.Info{Name: "s"}, info, "a free name reports nothing")
}

// TestExpirer_EveryTTLHolder: the leader keeps a timer per TTL lease, not
// per name: two TTL permits of one semaphore and two TTL read leases of
// one read-write lock, never refreshed, all expire in the store.
func TestExpirer_EveryTTLHolder(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	const ttl = 200 * time.Millisecond
	for range 2 {
		_, err := n.AcquirePermit(ctx, "s", 2, lock.WithTTL(ttl))
		require.NoError(t, err)
		_, err = n.AcquireRead(ctx, "rw", lock.WithTTL(ttl))
		require.NoError(t, err)
	}
	for _, name := range []string{"s", "rw"} {
		waitFor(t, func() bool {
			info, err := n.Inspect(ctx, name)
			return err == nil && !info.Held
		})
	}
}

// TestExpirer_RevokeGracePerLease: two revoked leases of one name (two
// permits) each get their grace timer, and each ends (EndRevoked) when it
// passes; the end of one does not stop the other's.
func TestExpirer_RevokeGracePerLease(t *testing.T) {
	e := newExpirer(0)
	e.mu.Lock()
	e.leader = true
	e.mu.Unlock()
	defer func() { e.mu.Lock(); e.stopAll(); e.mu.Unlock() }()
	e.handle([]fsm.Event{
		{Kind: fsm.EventRevoking, Name: "s", Token: 7, TTL: time.Millisecond},
		{Kind: fsm.EventRevoking, Name: "s", Token: 9, TTL: time.Millisecond},
	})
	ended := map[uint64]bool{}
	for len(ended) < 2 {
		select {
		case <-e.wake:
		case <-time.After(30 * time.Second):
			require.Fail(t, "the graces' ends were not proposed", "ended %v", ended)
		}
		for _, x := range e.take() {
			ended[x.cmd.GetEndRevoked().GetToken()] = true
		}
	}
	assert.Equal(t, map[uint64]bool{7: true, 9: true}, ended)
}

// TestBackup_HighestIndexSeesEveryHolder: a backup whose state holds a
// token above the backup's index is corrupt (later grants would repeat
// it, I2), also when that token is a semaphore's second permit: the check
// looked at the first holder only.
func TestBackup_HighestIndexSeesEveryHolder(t *testing.T) {
	st := fsm.New()
	sem := func(session, seq uint64) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
			Req: &fsmpb.Request{Session: session, Seq: seq}, Name: "s", Type: fsmpb.LockType_LOCK_TYPE_SEMAPHORE, Limit: 2,
		}}}
	}
	cmds := []*fsmpb.Command{
		{Op: &fsmpb.Command_SetProtocol{SetProtocol: &fsmpb.SetProtocol{Level: fsm.Protocol}}},
		{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{Req: &fsmpb.Request{Session: 2, Seq: 1}, TtlNs: int64(time.Minute)}}},
		sem(2, 2),
		{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{Req: &fsmpb.Request{Session: 4, Seq: 1}, TtlNs: int64(time.Minute)}}},
		sem(4, 2),
	}
	for i, cmd := range cmds {
		res, _, err := st.Apply(uint64(i+1), cmd)
		require.NoError(t, err)
		require.NotEqual(t, fsmpb.Code_CODE_INVALID, res.GetCode(), "command %d", i)
	}
	require.Len(t, st.Lock("s").Holders, 2)
	body, err := st.Snapshot()
	require.NoError(t, err)

	_, err = readBackup(bytes.NewReader(encodeBackup(4, 1, body)))
	require.ErrorIs(t, err, fsm.ErrCorrupt, "the second permit's token 5 is above index 4")
	b, err := readBackup(bytes.NewReader(encodeBackup(5, 1, body)))
	require.NoError(t, err)
	top, token := highest(b.state)
	assert.Equal(t, uint64(5), top)
	assert.Equal(t, uint64(5), token)
}

// TestBackup_FlooredTokens: a snapshot taken while a lease floored above
// the log index (FloorToken) is held makes a valid backup: its token is
// above the index but not above the state's token floor. It was refused
// as corrupt.
func TestBackup_FlooredTokens(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	const floor = uint64(1) << 40
	require.NoError(t, n.FloorToken(ctx, "x", floor))
	l, err := n.Acquire(ctx, "x")
	require.NoError(t, err)
	require.Equal(t, floor+1, l.Token())
	var buf bytes.Buffer
	_, err = n.Snapshot(ctx, &buf)
	require.NoError(t, err)
	b, err := readBackup(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	assert.Equal(t, floor+1, b.state.Lock("x").Token)
	require.NoError(t, l.Release(ctx))
}

// TestAdmit_MismatchIsInvalidOptionAtTheCaps: a call of another type or
// limit on a name whose queue is at WaitersPerName is ErrInvalidOption
// naming both, as below the cap: it cannot grow the state (the store
// answers MISMATCH), so the door's limits do not refuse it. It was
// ErrLimit.
func TestAdmit_MismatchIsInvalidOptionAtTheCaps(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{Limits: Limits{WaitersPerName: 1}})
	p, err := n.AcquirePermit(ctx, "s", 1)
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	waiting := make(chan error, 1)
	go func() { _, err := n.AcquirePermit(wctx, "s", 1); waiting <- err }()
	waitFor(t, func() bool { i, _ := n.InspectLocal("s"); return i.Waiters == 1 })

	_, err = n.AcquirePermit(ctx, "s", 2)
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	assert.Contains(t, err.Error(), "a semaphore of limit 1, asked as a semaphore of limit 2")
	_, err = n.AcquireWrite(ctx, "s")
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	_, err = n.AcquirePermit(ctx, "s", 1)
	require.ErrorIs(t, err, lock.ErrLimit, "the same type still meets the cap")
	cancel()
	require.ErrorIs(t, <-waiting, context.Canceled)
	require.NoError(t, p.Release(ctx))
}

// TestTypes_UnsupportedBeforeLevel5Commits: a call of protocol 5 that
// passes the door (every voter speaks 5) but applies before the cluster
// committed level 5 is answered UNSUPPORTED by the state machine; the
// caller gets lock.ErrUnsupported, as Revoke, Adopt and FloorToken do,
// and nothing is held. It was an untyped "unexpected result". A node
// that played protocol 4 from its start, then announces 5 without
// raising the committed level, holds that window open.
func TestTypes_UnsupportedBeforeLevel5Commits(t *testing.T) {
	ctx := testCtx(t)
	cfg := Config{}
	PlayProtocolFromStart(&cfg, 4, fsm.Needs)
	n := newNode(t, cfg)
	require.Equal(t, 4, n.Stats().Protocol)
	PlayProtocol(n, 5, fsm.Needs)

	_, err := n.Elector().Campaign(ctx, "e", "v")
	require.ErrorIs(t, err, lock.ErrUnsupported)
	_, err = n.AcquirePermit(ctx, "s", 2)
	require.ErrorIs(t, err, lock.ErrUnsupported)
	_, err = n.TryAcquireRead(ctx, "rw")
	require.ErrorIs(t, err, lock.ErrUnsupported)
	for _, name := range []string{"e", "s", "rw"} {
		info, err := n.Inspect(ctx, name)
		require.NoError(t, err)
		assert.False(t, info.Held, name)
	}
}
