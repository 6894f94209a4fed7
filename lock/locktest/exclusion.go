package locktest

import (
	"context"
	"errors"
	"fmt"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// testMutualExclusion (I1, I2): 16 goroutines spread over two Lockers take
// turns on one name. At most one may be inside the critical section, and the
// tokens seen there, in grant order, must strictly increase.
func testMutualExclusion(e *env) {
	const workers, rounds = 16, 10
	name := e.name("mutex")

	lockers := []lock.Locker{e.a, e.b}
	turn := turns{role: "worker", crowd: "holders inside the critical section", token: "token"}
	e.inRounds(workers, rounds, func(ctx context.Context, w, r int) error {
		lease, err := lockers[w%2].Acquire(ctx, name)
		if err != nil {
			return fmt.Errorf("worker %d round %d: Acquire: %w", w, r, err)
		}
		turn.enter(w, r, lease.Token())
		turn.leave(w, r)
		if err := lease.Release(ctx); err != nil {
			return fmt.Errorf("worker %d round %d: Release: %w", w, r, err)
		}
		return nil
	})
	assert.Empty(e.t, turn.violations, "mutual exclusion or fencing violated")
	assert.Equal(e.t, workers*rounds, turn.grants, "grants")
	e.requireFree(e.a, name, "after every worker released")
}

// testTryAcquireRace (I1): of 16 concurrent TryAcquire calls on a free name,
// over two Lockers, exactly one wins and the others get ErrHeld.
func testTryAcquireRace(e *env) {
	const racers, rounds = 16, 3
	lockers := []lock.Locker{e.a, e.b}
	for range rounds {
		name := e.name("tryrace")
		ctx := e.ctx()
		start := make(chan struct{})
		out := make(chan acquired, racers)
		for i := range racers {
			l := lockers[i%2]
			e.wg.Go(func() {
				<-start
				lease, err := l.TryAcquire(ctx, name)
				out <- acquired{id: i, lease: lease, err: err}
			})
		}
		close(start)
		var winners []lock.Lease
		for range racers {
			r := e.recv(out, "a racing TryAcquire")
			switch {
			case r.err == nil:
				winners = append(winners, r.lease)
			case !errors.Is(r.err, lock.ErrHeld):
				assert.Failf(e.t, "unexpected error", "racer %d: TryAcquire(%q): %v, want success or ErrHeld", r.id, name, r.err)
			}
		}
		assert.Len(e.t, winners, 1, "TryAcquire winners of one free name (I1)")
		if len(winners) > 0 {
			e.requireHeldBy(e.b, winners[len(winners)-1], "after the race")
		}
		for _, w := range winners {
			_ = w.Release(e.ctx())
		}
		e.requireFree(e.a, name, "after the winner released")
	}
}

// testTokensIncrease (I2): tokens of one name strictly increase across
// Release and re-Acquire, across Lockers, across Acquire and TryAcquire and
// across lease kinds; other names do not interfere.
func testTokensIncrease(e *env) {
	name, other := e.name("tokens"), e.name("tokens-other")
	var last, lastOther uint64
	for i := range 8 {
		l := []lock.Locker{e.a, e.b}[i%2]
		var opts []lock.Option
		if i%4 >= 2 {
			opts = append(opts, lock.WithTTL(lock.MaxTTL))
		}
		var lease lock.Lease
		if i%3 == 0 {
			lease = e.tryAcquire(l, name, opts...)
		} else {
			lease = e.acquire(l, name, opts...)
		}
		require.NotZero(e.t, lease.Token(), "token 0 is reserved for 'not held'")
		assert.Greater(e.t, lease.Token(), last, "grant %d of %q: token must exceed every earlier token of the name", i, name)
		last = lease.Token()
		e.requireHeldBy(e.b, lease, "after the grant")

		// Meanwhile the other Locker takes and drops another name.
		o := e.acquire([]lock.Locker{e.b, e.a}[i%2], other)
		assert.Greater(e.t, o.Token(), lastOther, "grant %d of %q", i, other)
		lastOther = o.Token()
		e.requireHeldBy(e.a, lease, "a grant of another name must not disturb this one")
		e.release(o)

		e.release(lease)
		e.requireFree(e.a, name, "after Release")
	}
}

// testTryAcquireHeld: TryAcquire of a held name fails with ErrHeld, from the
// other Locker and from the holder's own Locker (leases are not reentrant),
// without queueing and without disturbing the holder.
func testTryAcquireHeld(e *env) {
	name := e.name("tryheld")
	holder := e.acquire(e.a, name, lock.WithOwner("holder"))
	for _, c := range []struct {
		who  string
		l    lock.Locker
		opts []lock.Option
	}{
		{"other Locker", e.b, nil},
		{"holder's own Locker", e.a, nil},
		{"other Locker with a TTL", e.b, []lock.Option{lock.WithTTL(lock.MaxTTL)}},
		{"holder's own Locker with a TTL", e.a, []lock.Option{lock.WithTTL(lock.MaxTTL)}},
	} {
		lease, err := c.l.TryAcquire(e.ctx(), name, c.opts...)
		e.assertRejected(lease, err, lock.ErrHeld, "TryAcquire of a held name from the %s", c.who)
	}
	info := e.requireHeldBy(e.b, holder, "after failed TryAcquire calls")
	assert.Equal(e.t, "holder", info.Owner, "Inspect.Owner")
	assert.Zero(e.t, info.Waiters, "TryAcquire must not queue")
	assert.NoError(e.t, holder.Err(), "holder's Err")
	assert.False(e.t, isClosed(holder.Done()), "holder's Done closed")

	e.release(holder)
	next := e.tryAcquire(e.b, name)
	assert.Greater(e.t, next.Token(), holder.Token(), "token after re-acquiring")
	e.release(next)
}

// testNotReentrant: a second Acquire of a held name from the holder's own
// Locker waits for the first lease to end.
func testNotReentrant(e *env) {
	name := e.name("reentrant")
	holder := e.acquire(e.a, name)
	out := make(chan acquired, 1)
	e.goAcquire(e.ctx(), out, 0, e.a, name)
	e.eventually("the second Acquire from the holder's Locker is queued", func() (bool, string) {
		select {
		case r := <-out:
			if r.err == nil {
				_ = r.lease.Release(e.ctx())
			}
			e.t.Fatalf("second Acquire from the holder's Locker returned (err %v) while the name was held: leases are not reentrant", r.err)
		default:
		}
		info, err := e.poll(e.b, name)
		return err == nil && info.Waiters == 1, fmtInfo(info, err)
	})
	e.requireHeldBy(e.b, holder, "while the second Acquire waits")

	e.release(holder)
	r := e.recv(out, "the second Acquire after Release")
	require.NoError(e.t, r.err, "second Acquire after the first lease was released")
	assert.Greater(e.t, r.lease.Token(), holder.Token(), "token of the second lease")
	e.requireHeldBy(e.b, r.lease, "after the hand-off")
	e.release(r.lease)
	e.requireFree(e.b, name, "after both leases were released")
}

// testHandoff (I4): one holder, waiters on both Lockers; releasing hands the
// name to one waiter at a time until every waiter has had it.
func testHandoff(e *env) {
	queueAndDrain(e, e.name("handoff"), false)
}

// testFIFO: with FIFO(), waiters are granted in the order they were queued.
func testFIFO(e *env) {
	if !e.cfg.fifo {
		e.t.Skip("the backend does not promise FIFO waiters (pass locktest.FIFO() if it does)")
	}
	queueAndDrain(e, e.name("fifo"), true)
}

// queueAndDrain queues waiters behind a holder, then releases holder after
// holder. With ordered, waiter i is started only after Inspect counts i
// waiters, and the grants must follow that order.
func queueAndDrain(e *env, name string, ordered bool) {
	const waiters = 6
	owner := func(i int) string { return fmt.Sprintf("waiter-%d", i) }
	holder := e.acquire(e.a, name, lock.WithOwner("holder"))

	ctx := e.ctx()
	out := make(chan acquired, waiters)
	for i := range waiters {
		l := []lock.Locker{e.b, e.a}[i%2]
		if ordered {
			e.waitWaiters(e.a, name, i)
		}
		e.goAcquire(ctx, out, i, l, name, lock.WithOwner(owner(i)))
	}
	e.waitWaiters(e.b, name, waiters)

	prev := holder
	for n := range waiters {
		e.release(prev)
		r := e.recv(out, fmt.Sprintf("grant %d after Release", n))
		require.NoError(e.t, r.err, "grant %d: waiter %d's Acquire failed; a waiter must be granted when the name is released (I4)", n, r.id)
		if ordered {
			require.Equal(e.t, n, r.id, "grant %d went to waiter %d: waiters must be served in queue order (FIFO)", n, r.id)
		}
		assert.Greater(e.t, r.lease.Token(), prev.Token(), "token of grant %d", n)
		info := e.requireHeldBy(e.a, r.lease, fmt.Sprintf("after grant %d", n))
		assert.Equal(e.t, owner(r.id), info.Owner, "Inspect.Owner after grant %d", n)
		assert.Equal(e.t, waiters-1-n, info.Waiters, "Inspect.Waiters after grant %d", n)
		select {
		case r2 := <-out:
			e.t.Errorf("waiter %d returned (err %v) while waiter %d held the name (I1)", r2.id, r2.err, r.id)
		default:
		}
		prev = r.lease
	}
	e.release(prev)
	e.requireFree(e.b, name, "after the last waiter released")
}
