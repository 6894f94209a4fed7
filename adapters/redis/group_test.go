package redis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// Semaphores and read-write locks (DESIGN.md, "Semaphores and read-write
// locks"); the contract's behaviour is locktest's Semaphore and ReadWrite
// groups (conformance_test.go). These tests look at what only this store
// shows: slots, the held set, the hand-off inside one script, leftovers.

type permitResult struct {
	p   lock.Permit
	err error
	at  time.Time // when the call returned
}

func permitAsync(ctx context.Context, s lock.Semaphores, name string, limit int) <-chan permitResult {
	ch := make(chan permitResult, 1)
	go func() {
		p, err := s.AcquirePermit(ctx, name, limit)
		ch <- permitResult{p: p, err: err, at: time.Now()}
	}()
	return ch
}

func mustPermit(t *testing.T, s lock.Semaphores, name string, limit int, opts ...lock.Option) lock.Permit {
	t.Helper()
	p, err := s.AcquirePermit(testCtx(t), name, limit, opts...)
	require.NoError(t, err)
	return p
}

// TestSemaphore_ExpiryFreesItsSlot: of three permits, the TTL one that is
// not refreshed expires (no script runs then); the waiter on another
// Locker gets exactly its slot, after its holder's deadline, while the
// two others stay held; the held set never has more than the limit.
func TestSemaphore_ExpiryFreesItsSlot(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newLocker(t, srv.Addr(), 2*time.Second)
	b := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	const limit = 3
	p0 := mustPermit(t, a, "s", limit)
	p1 := mustPermit(t, a, "s", limit, lock.WithTTL(300*time.Millisecond))
	p2 := mustPermit(t, a, "s", limit)
	assert.Equal(t, []int{0, 1, 2}, []int{p0.Slot(), p1.Slot(), p2.Slot()}, "the smallest free slot each")

	waiter := permitAsync(ctx, b, "s", limit)
	waitWaiters(t, a, "s", 1)
	got := <-waiter
	require.NoError(t, got.err)
	assert.Equal(t, p1.Slot(), got.p.Slot(), "the expired permit's slot, and only it, is free")
	assert.Greater(t, got.p.Token(), p2.Token())
	assert.True(t, redis.LocalDeadline(p1).Before(got.at), "the expired holder's deadline passed before the next grant (I3)")
	waitDone(t, p1, 5*time.Second, "the expired permit")
	require.ErrorIs(t, p1.Err(), lock.ErrExpired)
	for _, p := range []lock.Permit{p0, p2} {
		assert.NoError(t, p.Err(), "another holder is untouched by the expiry")
	}
	raw := rawClient(t, srv.Addr())
	held, err := raw.ZRange(ctx, redis.DefaultPrefix+"held:s", 0, -1).Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{fmt.Sprint(p0.Token()), fmt.Sprint(p2.Token()), fmt.Sprint(got.p.Token())}, held)
	for _, p := range []lock.Permit{p0, p2, got.p} {
		require.NoError(t, p.Release(ctx))
	}
	assert.Equal(t, []string{"fence:s"}, keysOf(t, raw, "s"), "nobody holds or waits: only the counter is left")
}

// queueGhost queues claim by hand behind the waiters of name, as a waiter
// of a read-write lock asking mode (its process never calls again): only
// a script's hand-off can grant it.
func queueGhost(t *testing.T, raw *goredis.Client, name, claim, mode string) {
	t.Helper()
	ms := time.Minute.Milliseconds()
	queueByHand(t, raw, name, claim, fmt.Sprintf("read-write lock\n%s\n%d\n%d", mode, ms, ms), time.Minute)
}

// queueByHand queues claim by hand behind the waiters of name with the
// group entry entry and a heartbeat of beat from now.
func queueByHand(t *testing.T, raw *goredis.Client, name, claim, entry string, beat time.Duration) {
	t.Helper()
	ctx := testCtx(t)
	now, err := raw.Time(ctx).Result()
	require.NoError(t, err)
	p := redis.DefaultPrefix
	seq, err := raw.Incr(ctx, p+"qseq:"+name).Result()
	require.NoError(t, err)
	_, err = raw.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
		pipe.ZAdd(ctx, p+"queue:"+name, goredis.Z{Score: float64(seq), Member: claim})
		pipe.ZAdd(ctx, p+"beats:"+name, goredis.Z{Score: float64(now.UnixMilli() + beat.Milliseconds()), Member: claim})
		pipe.HSet(ctx, p+"claims:"+name, claim, fmt.Sprintf("%d\nnode\nowner", now.UnixMilli()), "g:"+claim, entry)
		return nil
	})
	require.NoError(t, err)
}

// TestRW_WithdrawAdmitsReadersBehind: a writer queued behind a reader
// withdraws (its ctx ends); the withdraw script itself grants both
// readers queued behind it — they were queued by hand and never call
// again, so no retry of theirs can have done it — while the first reader
// holds.
func TestRW_WithdrawAdmitsReadersBehind(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newLocker(t, srv.Addr(), 2*time.Second)
	b := newLocker(t, srv.Addr(), 2*time.Second)
	raw := rawClient(t, srv.Addr())
	ctx := testCtx(t)
	reader, err := a.AcquireRead(ctx, "rw")
	require.NoError(t, err)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	writer := make(chan error, 1)
	go func() {
		w, err := b.AcquireWrite(wctx, "rw")
		if err == nil {
			_ = w.Release(ctx)
		}
		writer <- err
	}()
	waitWaiters(t, a, "rw", 1)
	queueGhost(t, raw, "rw", "ghost/1", "read")
	queueGhost(t, raw, "rw", "ghost/2", "read")
	queueGhost(t, raw, "rw", "ghost/3", "write")
	waitWaiters(t, a, "rw", 4)
	lease := redis.DefaultPrefix + "lease:rw"
	n, err := raw.HExists(ctx, lease, "c:ghost/1").Result()
	require.NoError(t, err)
	require.False(t, n, "nobody is admitted behind a queued writer")

	cancel()
	require.ErrorIs(t, <-writer, context.Canceled)
	for _, g := range []string{"ghost/1", "ghost/2"} {
		ok, err := raw.HExists(ctx, lease, "c:"+g).Result()
		require.NoError(t, err)
		assert.True(t, ok, "%s, a reader behind the withdrawn writer, is granted by the withdrawal", g)
	}
	ok, err := raw.HExists(ctx, lease, "c:ghost/3").Result()
	require.NoError(t, err)
	assert.False(t, ok, "the writer behind them stays queued")
	held, err := raw.ZCard(ctx, redis.DefaultPrefix+"held:rw").Result()
	require.NoError(t, err)
	assert.EqualValues(t, 3, held, "the first reader and the two admitted")
	info, err := a.Inspect(ctx, "rw")
	require.NoError(t, err)
	assert.Equal(t, 1, info.Waiters, "only the ghost writer waits")
	assert.NoError(t, reader.Err(), "the first reader still holds")
	require.NoError(t, reader.Release(ctx))
}

// TestSemaphore_DeadWaiterHandOff: a waiter that died while queued (its
// heartbeat runs out in 5 s; it asked for a TTL of an hour) is granted by
// the release's hand-off, but only until its heartbeat would have run
// out, as a dead waiter would have been pruned.
func TestSemaphore_DeadWaiterHandOff(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	raw := rawClient(t, srv.Addr())
	ctx := testCtx(t)
	p := mustPermit(t, l, "d", 1)
	hour := time.Hour.Milliseconds()
	queueByHand(t, raw, "d", "ghost/1", fmt.Sprintf("semaphore\n1\n%d\n%d", hour, hour), 5*time.Second)
	require.NoError(t, p.Release(ctx))

	lease := redis.DefaultPrefix + "lease:d"
	tok, err := raw.HGet(ctx, lease, "c:ghost/1").Result()
	require.NoError(t, err, "the release grants the queued waiter")
	at, err := raw.ZScore(ctx, redis.DefaultPrefix+"held:d", tok).Result()
	require.NoError(t, err)
	now, err := raw.Time(ctx).Result()
	require.NoError(t, err)
	left := time.Duration(int64(at)-now.UnixMilli()) * time.Millisecond
	assert.Positive(t, left)
	assert.LessOrEqual(t, left, 5*time.Second, "the grant lasts no longer than the waiter's heartbeat")
	pttl, err := raw.PTTL(ctx, lease).Result()
	require.NoError(t, err)
	assert.LessOrEqual(t, pttl, 5*time.Second, "nor does the key")
}

// TestGroup_TypesAndLimits: a semaphore's name refuses another limit
// (both named) and every other type (both named), and so do a read-write
// lock's and a mutex's; the lease key lives while any holder does, so an
// older version's acquire sees the name held.
func TestGroup_TypesAndLimits(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	both := func(err error, live, asked string) {
		t.Helper()
		require.ErrorIs(t, err, lock.ErrInvalidOption)
		assert.Contains(t, err.Error(), "lives as "+live)
		assert.Contains(t, err.Error(), "asked as "+asked)
	}

	p := mustPermit(t, l, "s", 2)
	_, err := l.AcquirePermit(ctx, "s", 5)
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	assert.Contains(t, err.Error(), "limit 2")
	assert.Contains(t, err.Error(), "limit 5")
	_, err = l.TryAcquirePermit(ctx, "s", 1)
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	_, err = l.Acquire(ctx, "s")
	both(err, "a semaphore", "a mutex")
	_, err = l.Campaign(ctx, "s", "v")
	both(err, "a semaphore", "an election")
	_, err = l.Leader(ctx, "s")
	both(err, "a semaphore", "an election")
	_, err = l.AcquireRead(ctx, "s")
	both(err, "a semaphore", "a read-write lock")

	w, err := l.TryAcquireWrite(ctx, "w")
	require.NoError(t, err)
	_, err = l.TryAcquirePermit(ctx, "w", 1)
	both(err, "a read-write lock", "a semaphore")
	_, err = l.TryAcquire(ctx, "w")
	both(err, "a read-write lock", "a mutex")
	m, err := l.Acquire(ctx, "m")
	require.NoError(t, err)
	_, err = l.AcquireRead(ctx, "m")
	both(err, "a mutex", "a read-write lock")

	raw := rawClient(t, srv.Addr())
	p2 := mustPermit(t, l, "s", 2)
	require.NoError(t, p.Release(ctx))
	pttl, err := raw.PTTL(ctx, redis.DefaultPrefix+"lease:s").Result()
	require.NoError(t, err)
	assert.Positive(t, pttl, "the lease key lives while a holder does: an older acquire sees the name held")
	for _, lease := range []lock.Lease{p2, w, m} {
		require.NoError(t, lease.Release(ctx))
	}
	for _, name := range []string{"s", "w", "m"} {
		assert.Equal(t, []string{"fence:" + name}, keysOf(t, raw, name))
	}
	again := mustPermit(t, l, "s", 5)
	require.NoError(t, again.Release(ctx), "a free name takes any limit")
}

// TestGroup_NoLeftovers: a cancelled waiter leaves nothing; holders whose
// TTL runs out with no script run leave nothing either (both keys expire
// with the latest deadline), and the key outlives the first expiry.
func TestGroup_NoLeftovers(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newLocker(t, srv.Addr(), 2*time.Second)
	b := newLocker(t, srv.Addr(), 2*time.Second)
	raw := rawClient(t, srv.Addr())
	ctx := testCtx(t)

	w, err := a.AcquireWrite(ctx, "c")
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	reader := make(chan error, 1)
	go func() {
		r, err := b.AcquireRead(rctx, "c")
		if err == nil {
			_ = r.Release(ctx)
		}
		reader <- err
	}()
	waitWaiters(t, a, "c", 1)
	cancel()
	require.ErrorIs(t, <-reader, context.Canceled)
	assert.Equal(t, []string{"lease:c", "fence:c", "held:c"}, keysOf(t, raw, "c"), "the withdrawn reader left no queue keys")
	require.NoError(t, w.Release(ctx))
	assert.Equal(t, []string{"fence:c"}, keysOf(t, raw, "c"))

	short := mustPermit(t, a, "t", 2, lock.WithTTL(200*time.Millisecond))
	long := mustPermit(t, b, "t", 2, lock.WithTTL(600*time.Millisecond))
	waitDone(t, short, 5*time.Second, "the shorter TTL permit")
	assert.NoError(t, long.Err())
	assert.Contains(t, keysOf(t, raw, "t"), "lease:t", "the key lives while the longer permit does")
	waitDone(t, long, 5*time.Second, "the longer TTL permit")
	deadline := time.Now().Add(5 * time.Second)
	for len(keysOf(t, raw, "t")) > 1 {
		require.False(t, time.Now().After(deadline), "keys left after every holder's TTL: %v", keysOf(t, raw, "t"))
		time.Sleep(10 * time.Millisecond)
	}
	assert.Equal(t, []string{"fence:t"}, keysOf(t, raw, "t"))
}

// TestGroup_SessionRenewedAndRevoked: session permits outlive several
// SessionTTLs (the renewer extends each holder's deadline in the held
// set); a revoked permit ends with ErrRevoked and its release admits the
// waiter, with a greater token.
func TestGroup_SessionRenewedAndRevoked(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newLocker(t, srv.Addr(), 300*time.Millisecond)
	b := newLocker(t, srv.Addr(), 300*time.Millisecond)
	ctx := testCtx(t)
	p0 := mustPermit(t, a, "r", 2)
	p1 := mustPermit(t, a, "r", 2)
	select {
	case <-p0.Done():
		t.Fatalf("a session permit ended: %v", p0.Err())
	case <-p1.Done():
		t.Fatalf("a session permit ended: %v", p1.Err())
	case <-time.After(time.Second): // more than three SessionTTLs
	}
	waiter := permitAsync(ctx, b, "r", 2)
	waitWaiters(t, b, "r", 1)
	require.NoError(t, b.Revoke(ctx, "r", p0.Token()))
	require.ErrorIs(t, p0.Err(), lock.ErrRevoked)
	got := <-waiter
	require.NoError(t, got.err)
	assert.Equal(t, p0.Slot(), got.p.Slot(), "the revoked permit's slot")
	assert.Greater(t, got.p.Token(), p1.Token())
	assert.NoError(t, p1.Err())
	require.NoError(t, p1.Release(ctx))
	require.NoError(t, got.p.Release(ctx))
}

// TestGroup_Inspect: a group's Info has its type, every holder in token
// order (Holders) and the first of them in the top-level fields; List
// shows the name with its newest holder.
func TestGroup_Inspect(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newLocker(t, srv.Addr(), 2*time.Second)
	b := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	older, err := a.AcquireRead(ctx, "i", lock.WithTTL(time.Minute), lock.WithOwner("older"))
	require.NoError(t, err)
	newer, err := b.AcquireRead(ctx, "i", lock.WithOwner("newer"))
	require.NoError(t, err)
	info, err := a.Inspect(ctx, "i")
	require.NoError(t, err)
	assert.True(t, info.Held)
	assert.Equal(t, lock.TypeReadWrite, info.Type)
	assert.Zero(t, info.Limit)
	assert.Equal(t, older.Token(), info.Token, "the top-level fields are the first holder's")
	assert.Equal(t, "older", info.Owner)
	assert.Equal(t, lock.KindTTL, info.Kind)
	assert.Positive(t, info.ExpiresIn)
	assert.LessOrEqual(t, info.ExpiresIn, time.Minute)
	idOf := func(l *redis.Locker, name string) string { // a Locker's Holder ID
		lease, err := l.Acquire(ctx, name)
		require.NoError(t, err)
		defer func() { require.NoError(t, lease.Release(ctx)) }()
		return holderOf(t, l, name)
	}
	assert.Equal(t, idOf(a, "id-a"), info.Holder)
	require.Len(t, info.Holders, 2)
	assert.Equal(t, []uint64{older.Token(), newer.Token()}, []uint64{info.Holders[0].Token, info.Holders[1].Token})
	assert.Equal(t, info.ExpiresIn, info.Holders[0].ExpiresIn)
	h := info.Holders[1]
	assert.Equal(t, "newer", h.Owner)
	assert.Equal(t, lock.KindSession, h.Kind)
	assert.Zero(t, h.ExpiresIn, "a session lease has no ExpiresIn")
	assert.Equal(t, idOf(b, "id-b"), h.Holder)
	assert.Equal(t, lock.ModeRead, h.Mode)
	page, err := a.List(ctx, "i")
	require.NoError(t, err)
	require.Len(t, page.Locks, 1)
	assert.Equal(t, newer.Token(), page.Locks[0].Token, "List: the newest holder")

	// A writer queued behind the readers: its mode in the queue.
	writer := make(chan error, 1)
	go func() {
		w, err := a.AcquireWrite(ctx, "i")
		if err == nil {
			err = w.Release(ctx)
		}
		writer <- err
	}()
	waitWaiters(t, a, "i", 1)
	info, err = a.Inspect(ctx, "i")
	require.NoError(t, err)
	require.Len(t, info.Queue, 1)
	assert.Equal(t, lock.ModeWrite, info.Queue[0].Mode)
	require.NoError(t, newer.Release(ctx))
	require.NoError(t, older.Release(ctx))
	require.NoError(t, <-writer)
	info, err = a.Inspect(ctx, "i")
	require.NoError(t, err)
	assert.False(t, info.Held)
	assert.Equal(t, lock.TypeNone, info.Type, "free, nobody waits")
	assert.Nil(t, info.Holders)

	// A semaphore: its limit, and each permit's slot.
	p0 := mustPermit(t, a, "s", 3)
	p1 := mustPermit(t, b, "s", 3, lock.WithOwner("second"))
	info, err = a.Inspect(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, lock.TypeSemaphore, info.Type)
	assert.Equal(t, 3, info.Limit)
	require.Len(t, info.Holders, 2)
	for i, p := range []lock.Permit{p0, p1} {
		assert.Equal(t, p.Token(), info.Holders[i].Token)
		assert.Equal(t, p.Slot(), info.Holders[i].Slot)
		assert.Equal(t, lock.ModeNone, info.Holders[i].Mode)
	}
	require.NoError(t, p0.Release(ctx))
	info, err = a.Inspect(ctx, "s")
	require.NoError(t, err)
	require.Len(t, info.Holders, 1)
	assert.Equal(t, p1.Token(), info.Token, "the first holder left: the next is first")
	assert.Equal(t, "second", info.Owner)
	require.NoError(t, p1.Release(ctx))

	// A mutex: its type, no Holders; an election: its term, with its value.
	m, err := a.Acquire(ctx, "m")
	require.NoError(t, err)
	info, err = a.Inspect(ctx, "m")
	require.NoError(t, err)
	assert.Equal(t, lock.TypeMutex, info.Type)
	assert.Nil(t, info.Holders, "a mutex's one lease is the top-level fields")
	require.NoError(t, m.Release(ctx))
	term, err := a.Campaign(ctx, "e", "v1")
	require.NoError(t, err)
	info, err = a.Inspect(ctx, "e")
	require.NoError(t, err)
	assert.Equal(t, lock.TypeElection, info.Type)
	require.Len(t, info.Holders, 1)
	assert.Equal(t, term.Token(), info.Holders[0].Token)
	assert.Equal(t, "v1", info.Holders[0].Value)
	assert.Equal(t, info.Holder, info.Holders[0].Holder)
	require.NoError(t, term.Release(ctx))
}

// TestGroup_Redlock: every method of Semaphores and RWLockers answers
// ErrUnsupported in Redlock mode.
func TestGroup_Redlock(t *testing.T) {
	_, addrs := startRedlock(t, 3, testserver.RedisOptions{})
	r := newRedlock(t, addrs, 2*time.Second)
	ctx := testCtx(t)
	_, err := r.AcquirePermit(ctx, "s", 1)
	require.ErrorIs(t, err, lock.ErrUnsupported)
	_, err = r.TryAcquirePermit(ctx, "s", 1)
	require.ErrorIs(t, err, lock.ErrUnsupported)
	for _, f := range []func(context.Context, string, ...lock.Option) (lock.Lease, error){
		r.AcquireRead, r.TryAcquireRead, r.AcquireWrite, r.TryAcquireWrite,
	} {
		_, err = f(ctx, "rw")
		require.ErrorIs(t, err, lock.ErrUnsupported)
	}
}
