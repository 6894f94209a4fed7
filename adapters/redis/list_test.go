package redis_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// listAll pages through List(prefix) with limit and returns every Info
// listed, in order, checking on the way that no page is longer than limit,
// that every page but the last is full (nothing changes meanwhile) and
// that no page lists a name twice.
func listAll(t *testing.T, l *redis.Locker, prefix string, limit int) []lock.Info {
	t.Helper()
	var all []lock.Info
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000, "List(%q, limit %d) does not come to an end", prefix, limit)
		page, err := l.List(testCtx(t), prefix, lock.WithLimit(limit), lock.WithCursor(cursor))
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Locks), limit, "a page holds at most limit names")
		if page.Next != "" {
			require.Len(t, page.Locks, limit, "a page before the last is full")
		}
		seen := map[string]bool{}
		for _, info := range page.Locks {
			require.False(t, seen[info.Name], "page lists %q twice", info.Name)
			seen[info.Name] = true
		}
		all = append(all, page.Locks...)
		if page.Next == "" {
			return all
		}
		cursor = page.Next
	}
}

func namesOf(infos []lock.Info) []string {
	var out []string
	for _, info := range infos {
		out = append(out, info.Name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestList_Pages (issue 13, item 2): List returns the held names with a
// prefix, each with its Info (no Queue), in pages of at most limit names
// linked by an opaque cursor, and every held name at least once.
func TestList_Pages(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newNodeLocker(t, srv.Addr(), "node-a", 2*time.Second, nil)
	b := newNodeLocker(t, srv.Addr(), "node-b", 2*time.Second, nil)
	ctx := testCtx(t)

	var want []string
	leases := map[string]lock.Lease{}
	for i := range 40 {
		name := fmt.Sprintf("jobs/%02d", i)
		opts := []lock.Option{lock.WithOwner("owner " + name)}
		if i%4 == 0 {
			opts = append(opts, lock.WithTTL(time.Minute))
		}
		lease, err := a.Acquire(ctx, name, opts...)
		require.NoError(t, err)
		leases[name] = lease
		want = append(want, name)
	}
	for _, name := range []string{"job", "jobs", "other/1", "jobsX"} {
		_, err := b.Acquire(ctx, name)
		require.NoError(t, err)
	}
	freed, err := a.Acquire(ctx, "jobs/freed")
	require.NoError(t, err)
	require.NoError(t, freed.Release(ctx))
	out := goAcquire(ctx, b, "jobs/00", lock.WithOwner("waiting"))
	waitWaiters(t, a, "jobs/00", 1)

	for _, limit := range []int{1, 3, 7, 100} {
		all := listAll(t, a, "jobs/", limit)
		assert.Equal(t, want, namesOf(all), "limit %d: every held name with the prefix, no other", limit)
		for _, info := range all {
			lease := leases[info.Name]
			assert.True(t, info.Held)
			assert.Equal(t, lease.Token(), info.Token, info.Name)
			assert.Equal(t, "owner "+info.Name, info.Owner, info.Name)
			assert.Equal(t, "node-a", info.Node, info.Name)
			assert.NotEmpty(t, info.Holder, info.Name)
			assert.GreaterOrEqual(t, info.Since, time.Duration(0), info.Name)
			assert.Empty(t, info.Queue, "List reports no Queue")
			if info.Name == "jobs/00" {
				assert.Equal(t, 1, info.Waiters, "List counts the waiters")
			} else {
				assert.Zero(t, info.Waiters, info.Name)
			}
		}
	}
	for name, lease := range leases {
		info, err := b.Inspect(ctx, name)
		require.NoError(t, err)
		page := listAll(t, b, name, 1)
		require.Len(t, page, 1, "List of a full name lists it (and no other with that prefix)")
		got := page[0]
		assert.Equal(t, info.Kind, got.Kind, name)
		assert.Equal(t, info.Holder, got.Holder, name)
		assert.Equal(t, lease.Token(), got.Token, name)
		if info.Kind == lock.KindTTL {
			assert.Positive(t, got.ExpiresIn, name)
		} else {
			assert.Zero(t, got.ExpiresIn, name)
		}
	}

	assert.Len(t, namesOf(listAll(t, a, "", 100)), 44, "the empty prefix lists every held name")
	none, err := a.List(ctx, "nothing/")
	require.NoError(t, err)
	assert.Empty(t, none.Locks)
	assert.Empty(t, none.Next)

	require.NoError(t, leases["jobs/00"].Release(ctx))
	r := <-out
	require.NoError(t, r.err)
	require.NoError(t, r.lease.Release(ctx))
}

// TestList_GlobPrefix: the glob characters of a prefix (and of
// Config.Prefix) are taken literally by SCAN's MATCH.
func TestList_GlobPrefix(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	for _, keyPrefix := range []string{"", "q*[x]?\\:"} {
		l, err := redis.New(redis.Config{Addr: srv.Addr(), Prefix: keyPrefix})
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() })
		ctx := testCtx(t)
		const prefix = `a*[b]?`
		match := []string{`a*[b]?`, `a*[b]?1`, `a*[b]?\x`}
		// Each of these matches the prefix read as a glob pattern.
		decoys := []string{`azzb1`, `a*b?1`, `aXbY`, `ab1`, `a*[b]`, `a\*[b]?`}
		for _, name := range append(slices.Clone(match), decoys...) {
			_, err := l.Acquire(ctx, name)
			require.NoError(t, err)
		}
		for _, limit := range []int{1, 100} {
			assert.Equal(t, []string{`a*[b]?`, `a*[b]?1`, `a*[b]?\x`}, namesOf(listAll(t, l, prefix, limit)), "Config.Prefix %q, limit %d", keyPrefix, limit)
		}
		require.NoError(t, l.Close())
	}
}

// TestList_BadCursor: a cursor that is not one of this Locker's for this
// prefix fails with lock.ErrInvalidOption; a bad prefix or limit fails
// before any I/O.
func TestList_BadCursor(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), time.Second)
	other, err := redis.New(redis.Config{Addr: srv.Addr(), Prefix: "other:"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	ctx := testCtx(t)
	for i := range 5 {
		_, err := l.Acquire(ctx, fmt.Sprintf("x/%d", i))
		require.NoError(t, err)
		_, err = other.Acquire(ctx, fmt.Sprintf("x/%d", i))
		require.NoError(t, err)
	}
	page, err := l.List(ctx, "x/", lock.WithLimit(2))
	require.NoError(t, err)
	require.NotEmpty(t, page.Next)
	good := page.Next
	_, err = l.List(ctx, "x/", lock.WithLimit(2), lock.WithCursor(good))
	require.NoError(t, err, "the cursor itself is fine")

	damaged := []byte(good)
	damaged[len(damaged)/2] ^= 1
	for what, cursor := range map[string]string{
		"garbage":         "garbage!",
		"not base64":      "%%%%",
		"empty payload":   "AAAA",
		"damaged":         string(damaged),
		"truncated":       good[:len(good)-2],
		"extended":        good + "AA",
		"a node cursor":   "12345",
		"oversize":        string(make([]byte, lock.MaxCursorLen+1)),
		"another backend": "eyJuYW1lIjoieC8xIn0",
	} {
		_, err := l.List(ctx, "x/", lock.WithCursor(cursor))
		assert.ErrorIs(t, err, lock.ErrInvalidOption, what)
	}
	_, err = l.List(ctx, "y/", lock.WithCursor(good))
	require.ErrorIs(t, err, lock.ErrInvalidOption, "a cursor of another prefix")
	_, err = other.List(ctx, "x/", lock.WithCursor(good))
	require.ErrorIs(t, err, lock.ErrInvalidOption, "a cursor of another Config.Prefix")

	_, err = l.List(ctx, "bad\x00prefix")
	require.ErrorIs(t, err, lock.ErrInvalidName)
	_, err = l.List(ctx, "x/", lock.WithLimit(0))
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	_, err = l.List(ctx, "x/", lock.WithLimit(lock.MaxListLimit+1))
	require.ErrorIs(t, err, lock.ErrInvalidOption)
}
