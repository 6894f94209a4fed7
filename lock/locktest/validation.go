package locktest

import (
	"context"
	"strings"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// padTo pads name with fill, then with 'x', to exactly n bytes.
func padTo(name string, n int, fill string) string {
	name += strings.Repeat(fill, (n-len(name))/len(fill))
	return name + strings.Repeat("x", n-len(name))
}

// rejectCtx bounds a call that must fail at once, so that a backend that
// queues an invalid request fails the suite quickly.
func (e *env) rejectCtx() context.Context {
	ctx, cancel := context.WithTimeout(e.t.Context(), min(e.cfg.wait, 2*time.Second))
	e.t.Cleanup(cancel)
	return ctx
}

// testInvalidInput: invalid names and options fail with ErrInvalidName and
// ErrInvalidOption before anything else happens: before Acquire queues,
// before TryAcquire finds the name held, and without touching the store.
// The limits themselves are accepted.
func testInvalidInput(e *env) {
	p := e.cfg.prefix + "invalid-"
	for _, c := range []struct{ what, name string }{
		{"empty", ""},
		{"513 bytes long", padTo(p, lock.MaxNameLen+1, "x")},
		{"513 bytes of multi-byte UTF-8", padTo(p, lock.MaxNameLen+1, "é")},
		{"invalid UTF-8", p + "\xff\xfe"},
		{"truncated UTF-8", p + "\xe2\x82"},
		{"with a newline", p + "a\nb"},
		{"with a NUL byte", p + "a\x00b"},
		{"with a tab", p + "a\tb"},
		{"with DEL", p + "a\x7fb"},
		{"with a C1 control", p + "a\u0085b"},
	} {
		lease, err := e.a.Acquire(e.rejectCtx(), c.name)
		e.assertRejected(lease, err, lock.ErrInvalidName, "Acquire of a name %s", c.what)
		lease, err = e.a.TryAcquire(e.rejectCtx(), c.name)
		e.assertRejected(lease, err, lock.ErrInvalidName, "TryAcquire of a name %s", c.what)
		_, err = e.a.Inspect(e.rejectCtx(), c.name)
		assert.ErrorIs(e.t, err, lock.ErrInvalidName, "Inspect of a name %s", c.what)
	}

	free, held := e.name("invalid-free"), e.name("invalid-held")
	holder := e.acquire(e.b, held)
	for _, c := range []struct {
		what string
		opts []lock.Option
	}{
		{"WithTTL(50ms)", []lock.Option{lock.WithTTL(50 * time.Millisecond)}},
		{"WithTTL(0)", []lock.Option{lock.WithTTL(0)}},
		{"WithTTL(-1)", []lock.Option{lock.WithTTL(-1)}},
		{"WithTTL(MinTTL-1ns)", []lock.Option{lock.WithTTL(lock.MinTTL - 1)}},
		{"WithTTL(MaxTTL+1ns)", []lock.Option{lock.WithTTL(lock.MaxTTL + 1)}},
		{"WithTTL(25h)", []lock.Option{lock.WithTTL(25 * time.Hour)}},
		{"WithOwner of 64 KiB + 1 byte", []lock.Option{lock.WithOwner(strings.Repeat("o", lock.MaxOwnerLen+1))}},
		{"WithOwner of invalid UTF-8", []lock.Option{lock.WithOwner("\xff")}},
		{"a nil Option", []lock.Option{nil}},
		{"a nil Option after a valid one", []lock.Option{lock.WithOwner("x"), nil}},
	} {
		for _, n := range []struct{ what, name string }{{"a free name", free}, {"a held name", held}} {
			lease, err := e.a.Acquire(e.rejectCtx(), n.name, c.opts...)
			e.assertRejected(lease, err, lock.ErrInvalidOption, "Acquire of %s with %s", n.what, c.what)
			lease, err = e.a.TryAcquire(e.rejectCtx(), n.name, c.opts...)
			e.assertRejected(lease, err, lock.ErrInvalidOption, "TryAcquire of %s with %s", n.what, c.what)
		}
	}
	e.requireFree(e.b, free, "rejected requests must not take a name")
	info := e.requireHeldBy(e.a, holder, "after rejected requests")
	assert.Zero(e.t, info.Waiters, "a rejected Acquire must not queue")
	e.release(holder)

	maxOwner := strings.Repeat("ö", lock.MaxOwnerLen/2)
	for _, c := range []struct {
		what      string
		opts      []lock.Option
		owner     string
		mayExpire bool // a MinTTL lease may be over before the suite looks
	}{
		{"WithTTL(MinTTL)", []lock.Option{lock.WithTTL(lock.MinTTL)}, "", true},
		{"WithTTL(MaxTTL)", []lock.Option{lock.WithTTL(lock.MaxTTL)}, "", false},
		{"WithOwner of exactly 64 KiB", []lock.Option{lock.WithOwner(maxOwner)}, maxOwner, false},
		{"WithOwner and WithTTL", []lock.Option{lock.WithOwner("x"), lock.WithTTL(time.Minute)}, "x", false},
	} {
		for _, try := range []bool{false, true} {
			name := e.name("valid-option")
			var lease lock.Lease
			if try {
				lease = e.tryAcquire(e.a, name, c.opts...)
			} else {
				lease = e.acquire(e.a, name, c.opts...)
			}
			info := e.inspect(e.b, name)
			if !c.mayExpire || info.Held {
				// Owner may be 64 KiB: compare without printing it.
				assert.Truef(e.t, info.Held && info.Token == lease.Token() && info.Owner == c.owner,
					"Inspect after a grant with %s: Held %v, Token %d (lease %d), Owner of %d bytes (want %d)",
					c.what, info.Held, info.Token, lease.Token(), len(info.Owner), len(c.owner))
			}
			err := lease.Release(e.ctx())
			if c.mayExpire && err != nil {
				assert.ErrorIs(e.t, err, lock.ErrNotHeld, "Release of a lease granted with %s", c.what)
			} else {
				assert.NoError(e.t, err, "Release of a lease granted with %s", c.what)
			}
		}
	}
}

// testValidNames: names at the limits and names with characters that stores
// treat specially are accepted, and distinct names are distinct locks (an
// adapter's escaping must not make two names collide).
func testValidNames(e *env) {
	base := e.name("names")
	names := []string{
		base, base + "/", base + "//", base + "/x", base + "/x/", base + "/.", base + "/..",
		base + "%2Fx", base + "%2fx", base + "%x", base + "_x", base + "-x", base + ".x", base + ":x",
		base + " x", base + `\x`, base + "*", base + "?", base + "[x]", base + "{x}", base + "'\"",
		base + "X", base + "x",
		base + "\u00e9", base + "e\u0301", // é precomposed and decomposed: different bytes, different names
		base + "ключ-鍵-🔒",
		base + "\u200b",                  // zero-width space: a format character, not a control
		base + "\ue000", base + "\ufffe", // private use and a noncharacter: valid UTF-8 some stores reject
		padTo(base+"-", lock.MaxNameLen, "x"),
		padTo(base+"~", lock.MaxNameLen, "é"),
		padTo(base+"+", lock.MaxNameLen, "🔒"),
	}
	seen := make(map[string]bool)
	for _, n := range names {
		require.NoError(e.t, lock.ValidateName(n), "locktest bug: %q", n)
		require.False(e.t, seen[n], "locktest bug: %q twice", n)
		seen[n] = true
	}

	leases := make([]lock.Lease, len(names))
	for i, n := range names {
		lease, err := e.a.TryAcquire(e.ctx(), n)
		require.NoError(e.t, err, "TryAcquire(%q) while %d other names like it are held: distinct names must be distinct locks", n, i)
		require.Equal(e.t, n, lease.Name(), "Lease.Name")
		leases[i] = lease
	}
	for _, l := range leases {
		info := e.requireHeldBy(e.b, l, "name "+l.Name())
		assert.Equal(e.t, l.Name(), info.Name, "Inspect.Name")
		lease, err := e.b.TryAcquire(e.ctx(), l.Name())
		e.assertRejected(lease, err, lock.ErrHeld, "TryAcquire(%q) from the other Locker", l.Name())
	}
	for _, l := range leases {
		e.release(l)
		e.requireFree(e.b, l.Name(), "after Release of "+l.Name())
	}
	for _, l := range leases {
		e.requireFree(e.b, l.Name(), "after every name was released")
	}

	// Acquire (not only TryAcquire) accepts the longest names.
	for _, n := range names[len(names)-3:] {
		e.release(e.acquire(e.b, n))
	}
}
