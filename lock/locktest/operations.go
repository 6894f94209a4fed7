package locktest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// The operations of lock/DESIGN.md, "Operating a lock": Info's story,
// List, Revoke and Adopt. Every backend's Locker implements the three
// optional interfaces; one that cannot serve a call in its present mode
// answers lock.ErrUnsupported, and the subtest is skipped.

// core is the part of an Info that the Inspect subtest compares as a
// whole; InfoStory checks the rest.
func core(info lock.Info) lock.Info {
	return lock.Info{
		Name: info.Name, Held: info.Held, Token: info.Token, Owner: info.Owner,
		Waiters: info.Waiters, ExpiresIn: info.ExpiresIn,
	}
}

// skipUnsupported skips the subtest if err says the backend does not offer
// the call; it returns err otherwise.
func (e *env) skipUnsupported(err error, call string) error {
	e.t.Helper()
	if errors.Is(err, lock.ErrUnsupported) {
		e.t.Skipf("%s: %v", call, err)
	}
	return err
}

func (e *env) lister(l lock.Locker) lock.Lister {
	e.t.Helper()
	x, ok := l.(lock.Lister)
	require.Truef(e.t, ok, "%T does not implement lock.Lister", l)
	return x
}

func (e *env) revoker(l lock.Locker) lock.Revoker {
	e.t.Helper()
	x, ok := l.(lock.Revoker)
	require.Truef(e.t, ok, "%T does not implement lock.Revoker", l)
	return x
}

func (e *env) adopter(l lock.Locker) lock.Adopter {
	e.t.Helper()
	x, ok := l.(lock.Adopter)
	require.Truef(e.t, ok, "%T does not implement lock.Adopter", l)
	return x
}

// holderOf returns the Holder that Inspect reports for a lease of l.
func (e *env) holderOf(l lock.Locker) string {
	e.t.Helper()
	name := e.name("holder-of")
	lease := e.acquire(l, name)
	info := e.inspect(l, name)
	e.release(lease)
	require.NotEmptyf(e.t, info.Holder, "Inspect(%q).Holder of a held name", name)
	return info.Holder
}

// testInfoStory: Inspect tells who holds a name, of which kind, since
// when, and who waits behind it in which order.
func testInfoStory(e *env) {
	name := e.name("story")
	free := e.inspect(e.a, name)
	assert.Equal(e.t, lock.Info{Name: name}, free, "Inspect of a free name: every field but Name is zero")

	c := e.newLocker()
	holderA, holderB, holderC := e.holderOf(e.a), e.holderOf(e.b), e.holderOf(c)
	assert.NotEqual(e.t, holderA, holderB, "two Lockers must have distinct Holder IDs")
	assert.NotEqual(e.t, holderB, holderC, "two Lockers must have distinct Holder IDs")
	assert.Equal(e.t, holderA, e.holderOf(e.a), "Holder must be stable for one Locker")

	before := time.Now()
	lease := e.acquire(e.a, name, lock.WithOwner("story-a"))
	info := e.inspect(e.b, name)
	assert.Equal(e.t, lock.KindSession, info.Kind, "Kind of a session lease")
	assert.Equal(e.t, holderA, info.Holder, "Holder of a's lease")
	assert.GreaterOrEqual(e.t, info.Since, time.Duration(0), "Since")
	assert.LessOrEqual(e.t, info.Since, time.Since(before)+time.Second,
		"Since must not exceed the time since Acquire was called (plus a second for the store's clock granularity)")
	since := info.Since
	e.eventually("Inspect(name).Since grows", func() (bool, string) {
		info, err := e.poll(e.b, name)
		return err == nil && info.Since > since, fmtInfo(info, err)
	})

	ctx, cancel := e.cancelable()
	out := make(chan acquired, 2)
	e.goAcquire(ctx, out, 1, e.b, name, lock.WithOwner("story-b"))
	e.waitWaiters(e.a, name, 1)
	e.goAcquire(ctx, out, 2, c, name, lock.WithOwner("story-c"), lock.WithTTL(time.Minute))
	e.waitWaiters(e.a, name, 2)

	info = e.inspect(c, name)
	require.Lenf(e.t, info.Queue, 2, "Queue of two waiters: %+v", info)
	assert.Equal(e.t, []string{"story-b", "story-c"}, []string{info.Queue[0].Owner, info.Queue[1].Owner},
		"Queue must be in position order")
	if e.cfg.waiterIDsPerStore {
		assert.NotEmpty(e.t, info.Queue[0].Holder, "a Waiter's Holder")
		assert.NotEqual(e.t, info.Queue[0].Holder, info.Queue[1].Holder, "two Lockers' waiters have distinct Holders")
	} else {
		assert.Equal(e.t, []string{holderB, holderC}, []string{info.Queue[0].Holder, info.Queue[1].Holder},
			"each Waiter's Holder is its Locker's")
	}
	assert.GreaterOrEqual(e.t, info.Queue[0].Waited, info.Queue[1].Waited, "the first waiter has waited longest")
	assert.GreaterOrEqual(e.t, info.Queue[1].Waited, time.Duration(0), "Waited")
	assert.Equal(e.t, info.Node, e.inspect(e.a, name).Node, "Node of one holder, asked twice")

	for _, c := range []struct {
		opts []lock.InspectOption
		want int
	}{{nil, 2}, {[]lock.InspectOption{lock.WithQueueLimit(1)}, 1}, {[]lock.InspectOption{lock.WithQueueLimit(0)}, 0}} {
		info, err := e.a.Inspect(e.ctx(), name, c.opts...)
		require.NoError(e.t, err, "Inspect with %d options", len(c.opts))
		assert.Lenf(e.t, info.Queue, c.want, "Queue under a limit: %+v", info)
		assert.Equal(e.t, 2, info.Waiters, "Waiters counts every waiter whatever the queue limit")
	}
	for _, bad := range []lock.InspectOption{lock.WithQueueLimit(-1), lock.WithQueueLimit(lock.MaxQueueLimit + 1), nil} {
		_, err := e.a.Inspect(e.ctx(), name, bad)
		assert.ErrorIs(e.t, err, lock.ErrInvalidOption, "Inspect with a bad queue limit")
	}

	// Each waiter in turn: b's session lease and c's TTL lease, in queue
	// order where the backend is FIFO.
	holders := map[int]struct {
		holder string
		kind   lock.Kind
	}{1: {holderB, lock.KindSession}, 2: {holderC, lock.KindTTL}}
	prev := lease
	for turn := range 2 {
		e.release(prev)
		r := e.recv(out, "the next waiter")
		require.NoError(e.t, r.err, "waiter %d", r.id)
		if e.cfg.fifo {
			require.Equal(e.t, turn+1, r.id, "waiters are granted in queue order")
		}
		info = e.inspect(e.a, name)
		assert.Equal(e.t, holders[r.id].holder, info.Holder, "Holder after the hand-off to waiter %d", r.id)
		assert.Equal(e.t, holders[r.id].kind, info.Kind, "Kind of waiter %d's lease", r.id)
		assert.Len(e.t, info.Queue, 1-turn, "Queue after %d hand-offs", turn+1)
		prev = r.lease
	}
	cancel()
	e.release(prev)
	assert.Equal(e.t, lock.Info{Name: name}, e.inspect(e.a, name), "Inspect after the last release")
}

// listAll pages through List(prefix) and returns every Info it listed, in
// order, checking each page's size.
func (e *env) listAll(l lock.Lister, prefix string, limit int) []lock.Info {
	e.t.Helper()
	var all []lock.Info
	cursor := ""
	for pages := 0; ; pages++ {
		require.Lessf(e.t, pages, 1000, "List(%q) did not end after 1000 pages", prefix)
		page, err := l.List(e.ctx(), prefix, lock.WithLimit(limit), lock.WithCursor(cursor))
		require.NoError(e.t, e.skipUnsupported(err, "List"), "List(%q) page %d", prefix, pages)
		assert.LessOrEqualf(e.t, len(page.Locks), limit, "List(%q) page %d is larger than its limit", prefix, pages)
		all = append(all, page.Locks...)
		if page.Next == "" {
			return all
		}
		cursor = page.Next
	}
}

// testList: List pages through the held names under a prefix, each with
// its Info, and nothing else.
func testList(e *env) {
	ls := e.lister(e.a)
	prefix := e.name("list") + "/"
	empty, err := ls.List(e.ctx(), prefix)
	require.NoError(e.t, e.skipUnsupported(err, "List"), "List of an unused prefix")
	assert.Empty(e.t, empty.Locks, "List of an unused prefix")
	assert.Empty(e.t, empty.Next, "List of an unused prefix has no next page")

	// Names chosen so that byte order differs from insertion order.
	tails := []string{"m", "b", "z/1", "a", "é", "b0", "~"}
	leases := map[string]lock.Lease{}
	for i, tail := range tails {
		opts := []lock.Option{lock.WithOwner("owner-" + tail)}
		if i%2 == 1 {
			opts = append(opts, lock.WithTTL(time.Minute))
		}
		leases[prefix+tail] = e.acquire(e.a, prefix+tail, opts...)
	}
	outside := e.acquire(e.b, strings.TrimSuffix(prefix, "/")+"-outside")
	waiting := prefix + "waited-on"
	held := e.acquire(e.b, waiting)
	ctx, cancel := e.cancelable()
	out := make(chan acquired, 1)
	e.goAcquire(ctx, out, 1, e.a, waiting)
	e.waitWaiters(e.a, waiting, 1)
	leases[waiting] = held

	for _, limit := range []int{1, 3, lock.MaxListLimit} {
		all := e.listAll(e.lister(e.b), prefix, limit)
		var names []string
		for _, info := range all {
			names = append(names, info.Name)
			lease := leases[info.Name]
			if !assert.NotNilf(e.t, lease, "List(%q) listed %q, which is not a held name under the prefix", prefix, info.Name) {
				continue
			}
			assert.True(e.t, info.Held, "Held of a listed name")
			assert.Equal(e.t, lease.Token(), info.Token, "Token of listed %q", info.Name)
			if info.Name == waiting {
				assert.Equal(e.t, 1, info.Waiters, "Waiters of listed %q", info.Name)
			} else {
				assert.Equal(e.t, "owner-"+strings.TrimPrefix(info.Name, prefix), info.Owner, "Owner of listed %q", info.Name)
			}
			assert.NotEmpty(e.t, info.Holder, "Holder of listed %q", info.Name)
			assert.NotEqual(e.t, lock.KindNone, info.Kind, "Kind of listed %q", info.Name)
		}
		want := slices.Sorted(func(yield func(string) bool) {
			for n := range leases {
				if !yield(n) {
					return
				}
			}
		})
		if e.cfg.listUnordered {
			names = slices.Compact(slices.Sorted(slices.Values(names)))
		}
		assert.Equalf(e.t, want, names, "List(%q) with limit %d: every held name under the prefix, once, in byte order", prefix, limit)
	}

	e.release(leases[prefix+"m"])
	delete(leases, prefix+"m")
	for _, info := range e.listAll(ls, prefix, 2) {
		assert.NotEqual(e.t, prefix+"m", info.Name, "a released name must not be listed")
	}

	_, err = ls.List(e.ctx(), prefix, lock.WithCursor("not a cursor \x00"))
	assert.ErrorIs(e.t, err, lock.ErrInvalidOption, "List with a damaged cursor")
	for _, bad := range []lock.ListOption{lock.WithLimit(0), lock.WithLimit(lock.MaxListLimit + 1), nil} {
		_, err = ls.List(e.ctx(), prefix, bad)
		assert.ErrorIs(e.t, err, lock.ErrInvalidOption, "List with a bad option")
	}
	_, err = ls.List(e.ctx(), "bad\x00prefix")
	assert.ErrorIs(e.t, err, lock.ErrInvalidName, "List with a prefix that is not a valid name")

	cancel()
	r := e.recv(out, "the waiter")
	assert.ErrorIs(e.t, r.err, context.Canceled, "cancelled waiter")
	for _, lease := range leases {
		e.release(lease)
	}
	e.release(outside)
	assert.Empty(e.t, e.listAll(ls, prefix, 10), "List after every lease was released")
}

// testRevoke: Revoke ends a lease from outside; its holder learns first
// (Done closes with ErrRevoked before the waiter is granted), the next
// grant carries a greater token, and the revoked token is refused.
func testRevoke(e *env) {
	for _, k := range leaseKinds {
		name := e.name("revoke-" + k.name)
		rv := e.revoker(e.b)
		holder := e.acquire(e.a, name, k.opts...)

		type grant struct {
			acquired
			holderDone bool // whether the holder's Done was closed when the grant arrived
		}
		out := make(chan grant, 1)
		ctx := e.ctx()
		e.wg.Go(func() {
			lease, err := e.b.Acquire(ctx, name)
			out <- grant{acquired{lease: lease, err: err}, isClosed(holder.Done())}
		})
		e.waitWaiters(e.a, name, 1)

		err := rv.Revoke(e.ctx(), name, holder.Token())
		require.NoError(e.t, e.skipUnsupported(err, "Revoke"), "Revoke of a held %s lease", k.name)
		var g grant
		select {
		case g = <-out:
		case <-time.After(e.endBound()):
			e.t.Fatalf("waiter not granted within %v of the revoke", e.endBound())
		}
		require.NoError(e.t, g.err, "waiter's Acquire after the revoke")
		assert.Truef(e.t, g.holderDone, "%s lease: the holder's Done must close before the name is granted elsewhere", k.name)
		assertEnded(e, holder, lock.ErrRevoked, k.name+" lease after Revoke")
		assert.ErrorIs(e.t, holder.Err(), lock.ErrLost, "ErrRevoked must also be ErrLost")
		assert.Greater(e.t, g.lease.Token(), holder.Token(), "token of the grant after a revoke (I2)")

		assert.ErrorIs(e.t, holder.Refresh(e.ctx()), lock.ErrNotHeld, "Refresh of a revoked lease")
		assert.ErrorIs(e.t, holder.Release(e.ctx()), lock.ErrNotHeld, "Release of a revoked lease")
		assert.ErrorIs(e.t, rv.Revoke(e.ctx(), name, holder.Token()), lock.ErrNotHeld, "Revoke of a token already revoked")
		assert.ErrorIs(e.t, rv.Revoke(e.ctx(), name, g.lease.Token()+1), lock.ErrNotHeld, "Revoke with a wrong token")
		e.requireHeldBy(e.a, g.lease, "stale calls with the revoked token must not touch the new holder")
		assertHeld(e, g.lease, "new holder")
		e.release(g.lease)
	}

	// Without a waiter the name is free once Revoke returns.
	name := e.name("revoke-alone")
	holder := e.acquire(e.a, name, lock.WithTTL(time.Minute))
	require.NoError(e.t, e.revoker(e.a).Revoke(e.ctx(), name, holder.Token()), "Revoke by the holder's own Locker")
	assertEnded(e, holder, lock.ErrRevoked, "lease revoked by its own Locker")
	e.requireFree(e.b, name, "after Revoke returned")

	rv := e.revoker(e.b)
	assert.ErrorIs(e.t, rv.Revoke(e.ctx(), name, holder.Token()), lock.ErrNotHeld, "Revoke of a free name")
	assert.ErrorIs(e.t, rv.Revoke(e.ctx(), name, 0), lock.ErrNotHeld, "Revoke with token 0")
	assert.ErrorIs(e.t, rv.Revoke(e.ctx(), "", 1), lock.ErrInvalidName, "Revoke of an invalid name")
}

// testAdopt: another Locker takes over a TTL lease by its token; the lease
// keeps its token and TTL, the previous holder learns, and session leases
// cannot be adopted.
func testAdopt(e *env) {
	const ttl = time.Minute
	name := e.name("adopt")
	holder := e.acquire(e.a, name, lock.WithTTL(ttl), lock.WithOwner("adopt-owner"))
	ad := e.adopter(e.b)

	adopted, err := ad.Adopt(e.ctx(), name, holder.Token())
	require.NoError(e.t, e.skipUnsupported(err, "Adopt"), "Adopt of a TTL lease")
	require.NotNil(e.t, adopted, "Adopt returned neither a lease nor an error")
	assert.Equal(e.t, name, adopted.Name(), "Name of the adopted lease")
	assert.Equal(e.t, holder.Token(), adopted.Token(), "an adopted lease keeps its token")
	assertHeld(e, adopted, "adopted lease")
	e.waitClosed(holder.Done(), "the previous holder's Done after the adoption")
	assertEnded(e, holder, lock.ErrAdopted, "previous holder after the adoption")
	assert.ErrorIs(e.t, holder.Err(), lock.ErrLost, "ErrAdopted must also be ErrLost")

	info := e.requireHeldBy(e.a, adopted, "after Adopt")
	assert.Equal(e.t, e.holderOf(e.b), info.Holder, "Holder after Adopt is the adopting Locker")
	assert.Equal(e.t, lock.KindTTL, info.Kind, "Kind after Adopt")
	assert.Equal(e.t, "adopt-owner", info.Owner, "an adopted lease keeps its owner")
	assert.Greater(e.t, info.ExpiresIn, time.Duration(0), "ExpiresIn after Adopt")
	assert.LessOrEqual(e.t, info.ExpiresIn, ttl, "ExpiresIn after Adopt")

	assert.ErrorIs(e.t, holder.Release(e.ctx()), lock.ErrNotHeld, "Release by the previous holder")
	e.requireHeldBy(e.a, adopted, "the previous holder's Release must not end the adopted lease")
	require.NoError(e.t, adopted.Refresh(e.ctx()), "Refresh of the adopted lease")
	e.release(adopted)
	e.requireFree(e.a, name, "after the adopted lease was released")
	_, err = ad.Adopt(e.ctx(), name, holder.Token())
	assert.ErrorIs(e.t, err, lock.ErrNotHeld, "Adopt of a released lease")

	session := e.acquire(e.a, name)
	lease, err := ad.Adopt(e.ctx(), name, session.Token())
	e.assertRejected(lease, err, lock.ErrNotHeld, "Adopt of a session lease")
	lease, err = ad.Adopt(e.ctx(), name, session.Token()+1)
	e.assertRejected(lease, err, lock.ErrNotHeld, "Adopt with a wrong token")
	lease, err = ad.Adopt(e.ctx(), name, 0)
	e.assertRejected(lease, err, lock.ErrNotHeld, "Adopt with token 0")
	lease, err = ad.Adopt(e.ctx(), "", 1)
	e.assertRejected(lease, err, lock.ErrInvalidName, "Adopt of an invalid name")
	assertHeld(e, session, "a session lease after attempts to adopt it")
	e.release(session)
}
