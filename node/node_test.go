package node

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/lock/locktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// shared returns a newLocker for locktest: every call is a new client of
// the one node n.
func shared(n *Node) func(t *testing.T) lock.Locker {
	return func(t *testing.T) lock.Locker {
		l, err := n.NewLocker(context.Background())
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() })
		return l
	}
}

func newNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNode_Conformance(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		locktest.Run(t, shared(newNode(t, Config{})), locktest.FIFO())
	})
	t.Run("durable", func(t *testing.T) {
		locktest.Run(t, shared(newNode(t, Config{DataDir: t.TempDir()})), locktest.FIFO())
	})
}

func TestNode_DefaultClientIsALocker(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	l, err := n.Acquire(ctx, "job")
	require.NoError(t, err)
	_, err = n.TryAcquire(ctx, "job")
	assert.ErrorIs(t, err, lock.ErrHeld)
	info, err := n.Inspect(ctx, "job")
	require.NoError(t, err)
	assert.Equal(t, l.Token(), info.Token)
	require.NoError(t, n.Close())
	assert.ErrorIs(t, l.Err(), lock.ErrReleased)
	_, err = n.Acquire(ctx, "job")
	assert.ErrorIs(t, err, lock.ErrClosed)
	_, err = n.NewLocker(ctx)
	assert.ErrorIs(t, err, lock.ErrClosed)
	assert.NoError(t, n.Close(), "Close is idempotent")
}

func TestNew_InvalidConfig(t *testing.T) {
	for _, cfg := range []Config{
		{SessionTTL: time.Millisecond},
		{SessionTTL: 2 * time.Hour},
		{SessionTTL: -time.Second},
		{ID: string(make([]byte, 300))},
		{SnapshotInterval: time.Millisecond},
		{Timing: Timing(7)},
	} {
		_, err := New(cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", cfg)
	}
}

func TestNew_DataDirInUse(t *testing.T) {
	dir := t.TempDir()
	newNode(t, Config{DataDir: dir})
	_, err := New(Config{DataDir: dir})
	assert.Error(t, err, "a second node on the same DataDir must fail, not hang")
}

// TestNode_RestartKeepsState kills the node (no release, no session close),
// reopens it on the same DataDir, and checks that leases, queues and the
// token counter survived; then that the dead process's sessions expire and
// hand over, while its TTL lease lives on to its TTL.
func TestNode_RestartKeepsState(t *testing.T) {
	for _, snapshotFirst := range []bool{false, true} {
		name := "log"
		if snapshotFirst {
			name = "snapshot+log"
		}
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			dir := t.TempDir()
			cfg := Config{DataDir: dir, SessionTTL: time.Second}
			n, err := New(cfg)
			require.NoError(t, err)
			x, err := n.NewLocker(ctx)
			require.NoError(t, err)
			y, err := n.NewLocker(ctx)
			require.NoError(t, err)

			ttlLease, err := x.Acquire(ctx, "ttl", lock.WithTTL(time.Hour), lock.WithOwner("x"))
			require.NoError(t, err)
			sessLease, err := x.Acquire(ctx, "sess", lock.WithOwner("x"))
			require.NoError(t, err)
			if snapshotFirst {
				require.NoError(t, n.raft.Snapshot().Error())
			}
			waitErrs := make(chan error, 2)
			for _, name := range []string{"ttl", "sess"} {
				go func() {
					_, err := y.Acquire(ctx, name)
					waitErrs <- err
				}()
			}
			waitFor(t, func() bool {
				a, _ := n.Inspect(ctx, "ttl")
				b, _ := n.Inspect(ctx, "sess")
				return a.Waiters == 1 && b.Waiters == 1
			})

			require.NoError(t, n.Abort())
			for range 2 {
				assert.ErrorIs(t, <-waitErrs, lock.ErrClosed)
			}
			assert.ErrorIs(t, sessLease.Err(), lock.ErrLost)

			n2, err := New(cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = n2.Close() })

			a, err := n2.Inspect(ctx, "ttl")
			require.NoError(t, err)
			assert.True(t, a.Held)
			assert.Equal(t, ttlLease.Token(), a.Token)
			assert.Equal(t, "x", a.Owner)
			assert.Equal(t, 1, a.Waiters)
			assert.Greater(t, a.ExpiresIn, 50*time.Minute)
			b, err := n2.Inspect(ctx, "sess")
			require.NoError(t, err)
			assert.True(t, b.Held)
			assert.Equal(t, sessLease.Token(), b.Token)
			assert.Equal(t, 1, b.Waiters)

			fresh, err := n2.Acquire(ctx, "fresh")
			require.NoError(t, err)
			assert.Greater(t, fresh.Token(), max(ttlLease.Token(), sessLease.Token()), "token counter survives")

			// The dead process's sessions expire (re-armed at a full TTL by
			// the restarted leader): the session lease and both queued claims
			// go, the TTL lease stays.
			waitFor(t, func() bool {
				b, err := n2.Inspect(ctx, "sess")
				return err == nil && !b.Held && b.Waiters == 0
			})
			a, err = n2.Inspect(ctx, "ttl")
			require.NoError(t, err)
			assert.True(t, a.Held, "a TTL lease outlives its session")
			assert.Equal(t, 0, a.Waiters)
			next, err := n2.TryAcquire(ctx, "sess")
			require.NoError(t, err)
			assert.Greater(t, next.Token(), fresh.Token())
		})
	}
}

func TestNode_AbandonedSessionHandsOver(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{SessionTTL: 600 * time.Millisecond})
	holder, err := n.newClient(ctx)
	require.NoError(t, err)
	waiter, err := n.NewLocker(ctx)
	require.NoError(t, err)
	l, err := holder.Acquire(ctx, "x")
	require.NoError(t, err)

	holder.abandon() // stops renewing without telling the store
	assert.ErrorIs(t, l.Err(), lock.ErrLost)
	got, err := waiter.Acquire(ctx, "x")
	require.NoError(t, err, "the waiter gets the lock once the silent session expires")
	assert.Greater(t, got.Token(), l.Token())
}

func TestNode_SessionExpiryEndsLeaseFirst(t *testing.T) {
	// A holder cut off from the leader: its keep-alives fail and it hears
	// no applied events. Its own deadline (send time of the last
	// acknowledged keep-alive + TTL − margin) must close Done before the
	// leader's expiry hands the lock to the waiter (I3).
	ctx := testCtx(t)
	n := newNode(t, Config{SessionTTL: 600 * time.Millisecond})
	holder, err := n.newClient(ctx)
	require.NoError(t, err)
	waiter, err := n.NewLocker(ctx)
	require.NoError(t, err)
	l, err := holder.Acquire(ctx, "x")
	require.NoError(t, err)

	n.unregister(holder) // it hears no applied events
	holder.mu.Lock()
	holder.renew = func(uint64, time.Duration) bool { return false }
	holder.mu.Unlock()

	type grant struct {
		lease             lock.Lease
		holderAlreadyDone bool
		err               error
	}
	got := make(chan grant, 1)
	go func() {
		lease, err := waiter.Acquire(ctx, "x")
		got <- grant{lease: lease, holderAlreadyDone: l.Err() != nil, err: err}
	}()
	g := <-got
	require.NoError(t, g.err)
	assert.True(t, g.holderAlreadyDone, "the holder's Done must close before the store grants the name elsewhere")
	assert.ErrorIs(t, l.Err(), lock.ErrLost)
	assert.Greater(t, g.lease.Token(), l.Token())
	holder.abandon()
}

func TestBridge_CorruptEntryPanics(t *testing.T) {
	b := newBridge(func([]fsm.Event) {}, nil)
	assert.Panics(t, func() {
		b.ApplyBatch([]*raft.Log{{Index: 1, Type: raft.LogCommand, Data: []byte{0xff, 0xff, 0xff}}})
	})
	unknown, err := fsm.Encode(&fsmpb.Command{}) // no op: a newer version's command
	require.NoError(t, err)
	assert.Panics(t, func() {
		b.ApplyBatch([]*raft.Log{{Index: 2, Type: raft.LogCommand, Data: unknown}})
	})
	ignorable, err := fsm.Encode(&fsmpb.Command{Ignorable: true})
	require.NoError(t, err)
	out := b.ApplyBatch([]*raft.Log{{Index: 3, Type: raft.LogCommand, Data: ignorable}})
	require.Len(t, out, 1)
	assert.Equal(t, fsmpb.Code_CODE_UNSPECIFIED, out[0].(entryResult).res.GetCode())
}

func TestBridge_RestoreRejectsCorruptSnapshot(t *testing.T) {
	b := newBridge(func([]fsm.Event) {}, nil)
	for _, data := range [][]byte{nil, {1, 2, 3}, append(make([]byte, 8), 0xff, 0xff)} {
		err := b.Restore(io.NopCloser(bytes.NewReader(data)))
		assert.ErrorIs(t, err, fsm.ErrCorrupt, "%x", data)
	}
}

// waitFor polls cond every 10 ms for up to 15 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 15*time.Second, 10*time.Millisecond)
}

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
