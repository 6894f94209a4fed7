package httplocker_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/quorumlock/quorumlock/internal/httplocker"
	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/lockhttp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// serveCluster starts a 3-node cluster with a lockhttp handler per node,
// each behind wrap (nil: none), and returns the replicas, whose HTTP
// clients time out after timeout.
func serveCluster(t *testing.T, timeout time.Duration, wrap func(http.Handler) http.Handler) []httplocker.Replica {
	t.Helper()
	_, replicas := serveClusterOf(t, timeout, wrap)
	return replicas
}

// serveClusterOf is serveCluster that also returns the cluster.
func serveClusterOf(t *testing.T, timeout time.Duration, wrap func(http.Handler) http.Handler) (*testcluster.Cluster, []httplocker.Replica) {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{Size: 3})
	c.WaitProtocol(3)
	var replicas []httplocker.Replica
	for i := range c.Size() {
		h, err := lockhttp.New(lockhttp.Config{Locker: c.Node(i), OpTimeout: 10 * time.Second})
		require.NoError(t, err)
		var hh http.Handler = h
		if wrap != nil {
			hh = wrap(h)
		}
		srv := httptest.NewServer(hh)
		client := &http.Client{Timeout: timeout}
		t.Cleanup(func() {
			client.CloseIdleConnections()
			srv.Close()
			require.NoError(t, h.Close())
		})
		replicas = append(replicas, httplocker.Replica{Base: srv.URL, Client: client})
	}
	return c, replicas
}

func newLocker(t *testing.T, replicas []httplocker.Replica) *httplocker.Locker {
	t.Helper()
	l := httplocker.New(replicas, 5*time.Second)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// waiters polls name's queue length until it is n.
func waiters(t *testing.T, l lock.Locker, name string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		info, err := l.Inspect(t.Context(), name)
		return err == nil && info.Waiters == n
	}, 15*time.Second, 5*time.Millisecond, "%s: want %d waiters", name, n)
}

func TestLocker_AcquireRelease(t *testing.T) {
	replicas := serveCluster(t, 15*time.Second, nil)
	a, b := newLocker(t, replicas), newLocker(t, replicas)

	l1, err := a.Acquire(t.Context(), "job")
	require.NoError(t, err)
	info, err := b.Inspect(t.Context(), "job")
	require.NoError(t, err)
	assert.True(t, info.Held)
	assert.Equal(t, l1.Token(), info.Token)
	_, err = b.TryAcquire(t.Context(), "job")
	require.ErrorIs(t, err, lock.ErrHeld)

	require.NoError(t, l1.Release(t.Context()))
	require.ErrorIs(t, l1.Err(), lock.ErrReleased)
	l2, err := b.TryAcquire(t.Context(), "job")
	require.NoError(t, err)
	assert.Greater(t, l2.Token(), l1.Token())
	require.ErrorIs(t, l1.Release(t.Context()), lock.ErrNotHeld, "a released lease is not held")
	require.NoError(t, l2.Refresh(t.Context()))
}

func TestLocker_OptionsRefused(t *testing.T) {
	l := httplocker.New([]httplocker.Replica{{Base: "http://127.0.0.1:1", Client: http.DefaultClient}}, time.Second)
	defer func() { _ = l.Close() }()
	_, err := l.Acquire(t.Context(), "x", lock.WithTTL(time.Minute))
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	_, err = l.TryAcquire(t.Context(), "x", lock.WithTTL(time.Minute))
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	_, err = l.Inspect(t.Context(), "x", lock.WithQueueLimit(1))
	require.ErrorIs(t, err, lock.ErrInvalidOption)
}

// An acquire whose request's wait runs out (the HTTP client's timeout
// bounds it) asks again: Acquire blocks until the grant.
func TestLocker_AcquireOutlastsOneRequest(t *testing.T) {
	var acquires atomic.Int32
	second := make(chan struct{})
	count := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.Contains(r.URL.RawQuery, "wait=") && acquires.Add(1) == 2 {
				close(second)
			}
			next.ServeHTTP(w, r)
		})
	}
	// Client timeout 1.2 s: each request waits 200 ms.
	replicas := serveCluster(t, 1200*time.Millisecond, count)
	a, b := newLocker(t, replicas), newLocker(t, replicas)
	held, err := a.Acquire(t.Context(), "slow")
	require.NoError(t, err) // the first counted request
	got := make(chan error, 1)
	go func() {
		l, err := b.Acquire(t.Context(), "slow")
		if err == nil {
			err = l.Release(t.Context())
		}
		got <- err
	}()
	select {
	case <-second: // the waiter's first request ran out; this is its second
	case err := <-got:
		t.Fatalf("Acquire returned %v before the lock was released", err)
	}
	require.NoError(t, held.Release(t.Context()))
	require.NoError(t, <-got)
}

// Close ends the session: its leases are released at once, and every
// later call (and a release of its leases) returns ErrClosed.
func TestLocker_CloseReleasesLeases(t *testing.T) {
	replicas := serveCluster(t, 15*time.Second, nil)
	a, b := newLocker(t, replicas), newLocker(t, replicas)
	la, err := a.Acquire(t.Context(), "c")
	require.NoError(t, err)
	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "Close is idempotent")

	lb, err := b.TryAcquire(t.Context(), "c")
	require.NoError(t, err, "the closed Locker's lease was released")
	assert.Greater(t, lb.Token(), la.Token())
	_, err = a.Acquire(t.Context(), "d")
	require.ErrorIs(t, err, lock.ErrClosed)
	_, err = a.TryAcquire(t.Context(), "d")
	require.ErrorIs(t, err, lock.ErrClosed)
	_, err = a.Inspect(t.Context(), "d")
	require.ErrorIs(t, err, lock.ErrClosed)

	// Close ended the lease: Done is closed, and Release and Refresh
	// answer ErrNotHeld with the cause (lock.Lease).
	select {
	case <-la.Done():
	default:
		t.Fatal("Close did not end the lease: Done is open")
	}
	require.ErrorIs(t, la.Err(), lock.ErrReleased)
	err = la.Release(t.Context())
	require.ErrorIs(t, err, lock.ErrNotHeld)
	require.ErrorIs(t, err, lock.ErrReleased)
	require.ErrorIs(t, la.Refresh(t.Context()), lock.ErrNotHeld)
}

// One session serves all of a Locker's calls and the API answers a
// session's second acquire of a name with its first lease: the Locker
// itself must make a second Acquire wait and a TryAcquire answer ErrHeld
// (leases are not reentrant, lock.Locker).
func TestLocker_NotReentrant(t *testing.T) {
	replicas := serveCluster(t, 15*time.Second, nil)
	a := newLocker(t, replicas)
	l1, err := a.Acquire(t.Context(), "re")
	require.NoError(t, err)

	_, err = a.TryAcquire(t.Context(), "re")
	require.ErrorIs(t, err, lock.ErrHeld, "TryAcquire of a name this Locker holds")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = a.Acquire(ctx, "re")
	require.ErrorIs(t, err, context.DeadlineExceeded, "a second Acquire waits while the first lease is held")

	got := make(chan lock.Lease, 1)
	errs := make(chan error, 1)
	go func() {
		l, err := a.Acquire(t.Context(), "re")
		if err != nil {
			errs <- err
			return
		}
		got <- l
	}()
	require.NoError(t, l1.Release(t.Context()))
	select {
	case l2 := <-got:
		assert.Greater(t, l2.Token(), l1.Token(), "a new grant, not the first lease again")
		require.NoError(t, l2.Release(t.Context()))
	case err := <-errs:
		t.Fatalf("the waiting Acquire failed: %v", err)
	}
}

// Crash gives the session up: its leases end with ErrLost here, and the
// Locker's claim on their names goes with them.
func TestLocker_CrashEndsLeases(t *testing.T) {
	replicas := serveCluster(t, 15*time.Second, nil)
	a := newLocker(t, replicas)
	l, err := a.Acquire(t.Context(), "crash")
	require.NoError(t, err)
	a.Crash()
	select {
	case <-l.Done():
	default:
		t.Fatal("Crash did not end the session's lease: Done is open")
	}
	require.ErrorIs(t, l.Err(), lock.ErrLost)
	require.ErrorIs(t, l.Release(t.Context()), lock.ErrNotHeld)
	_, err = a.TryAcquire(t.Context(), "crash")
	require.ErrorIs(t, err, lock.ErrHeld, "the store holds the crashed session's lease until it expires")
	require.NotContains(t, err.Error(), "by this Locker")
}

// A session the store no longer has (ended behind the Locker's back, as
// an expiry would) is replaced: Acquire and TryAcquire succeed on a new
// session, and the old one's leases end as lost.
func TestLocker_SessionGoneRetried(t *testing.T) {
	replicas := serveCluster(t, 15*time.Second, nil)
	// A session TTL of a minute: the renewer (every 20 s) does not find the
	// session gone first; the acquire does.
	a := httplocker.New(replicas, time.Minute)
	t.Cleanup(func() { _ = a.Close() })
	old, err := a.Acquire(t.Context(), "first")
	require.NoError(t, err)
	session := a.CurrentSession()
	code, _, err := replicas[0].Call(t.Context(), http.MethodDelete, "/v1/sessions/"+session)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)

	l, err := a.Acquire(t.Context(), "second")
	require.NoError(t, err, "Acquire opens a new session when the store dropped the old one")
	assert.NotEqual(t, session, a.CurrentSession())
	require.ErrorIs(t, old.Err(), lock.ErrLost, "the dropped session's lease ended")
	require.NoError(t, l.Release(t.Context()))

	session = a.CurrentSession()
	code, _, err = replicas[1].Call(t.Context(), http.MethodDelete, "/v1/sessions/"+session)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	l, err = a.TryAcquire(t.Context(), "third")
	require.NoError(t, err, "TryAcquire too")
	require.NoError(t, l.Release(t.Context()))
}

// A replica answering 503 (no quorum) maps to lock.ErrNoQuorum. The
// survivor may answer from its leader lease for a moment after its peers
// die: the test asks until it fails.
func TestLocker_NoQuorumMapped(t *testing.T) {
	c, replicas := serveClusterOf(t, 30*time.Second, nil)
	c.Kill(1)
	c.Kill(2)
	a := newLocker(t, replicas[:1])
	var err error
	deadline := time.Now().Add(time.Minute)
	for err == nil && time.Now().Before(deadline) {
		_, err = a.Inspect(t.Context(), "nq")
	}
	require.ErrorIs(t, err, lock.ErrNoQuorum)
}

// blackHole is a TCP listener that accepts connections and answers
// nothing (hold: keeps them open) or closes them at once; accepted counts
// them.
func blackHole(t *testing.T, hold bool) (base string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted = new(atomic.Int32)
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			if hold {
				conns = append(conns, conn)
			} else {
				_ = conn.Close()
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "http://" + ln.Addr().String(), accepted
}

// While one call is opening the session (its replica does not answer),
// another call's ctx still bounds it.
func TestLocker_OpeningHonorsCtx(t *testing.T) {
	base, accepted := blackHole(t, true)
	client := &http.Client{}
	defer client.CloseIdleConnections()
	l := httplocker.New([]httplocker.Replica{{Base: base, Client: client}}, time.Minute)
	first := make(chan error, 1)
	go func() { _, err := l.Acquire(context.Background(), "a"); first <- err }()
	require.Eventually(t, func() bool { return accepted.Load() > 0 }, 15*time.Second, time.Millisecond)

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	second := make(chan error, 1)
	go func() { _, err := l.Acquire(ctx, "b"); second <- err }()
	hang := time.NewTimer(20 * time.Second) // only a hang reaches it
	defer hang.Stop()
	hung := false
	select {
	case err := <-second:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-hang.C:
		hung = true
		t.Error("Acquire outlived its ctx while another call opened the session")
	}
	require.NoError(t, l.Close())
	require.ErrorIs(t, <-first, lock.ErrClosed)
	if hung {
		assert.Error(t, <-second, "Close ends it")
	}
}

// Opening a session at a replica that fails at once backs off between
// attempts instead of spinning.
func TestLocker_OpeningBacksOff(t *testing.T) {
	base, accepted := blackHole(t, false)
	client := &http.Client{}
	defer client.CloseIdleConnections()
	l := httplocker.New([]httplocker.Replica{{Base: base, Client: client}}, time.Second)
	defer func() { _ = l.Close() }()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_, err := l.Acquire(ctx, "x")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// With pauses of 10 ms doubling (±25 %), 500 ms hold about 6 attempts;
	// a load can only make fewer.
	assert.LessOrEqual(t, accepted.Load(), int32(60), "attempts in 500 ms")
}

// Close ends a blocked Acquire with ErrClosed and its claim is withdrawn;
// a cancelled Acquire returns ctx's error and withdraws its claim.
func TestLocker_BlockedAcquireEnds(t *testing.T) {
	replicas := serveCluster(t, 15*time.Second, nil)
	holder, observer := newLocker(t, replicas), newLocker(t, replicas)
	_, err := holder.Acquire(t.Context(), "q")
	require.NoError(t, err)

	closing := newLocker(t, replicas)
	got := make(chan error, 1)
	go func() { _, err := closing.Acquire(context.Background(), "q"); got <- err }()
	waiters(t, observer, "q", 1)
	require.NoError(t, closing.Close())
	require.ErrorIs(t, <-got, lock.ErrClosed)
	waiters(t, observer, "q", 0)

	cancelled := newLocker(t, replicas)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { _, err := cancelled.Acquire(ctx, "q"); got <- err }()
	waiters(t, observer, "q", 1)
	cancel()
	require.ErrorIs(t, <-got, context.Canceled)
	waiters(t, observer, "q", 0)
}

// With no replica answering, opening the session retries until ctx ends,
// and Close ends it at once.
func TestLocker_NoReplicaNoHang(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	l := httplocker.New([]httplocker.Replica{{Base: dead, Client: client}}, time.Second)

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = l.Acquire(ctx, "x")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	got := make(chan error, 1)
	go func() { _, err := l.Acquire(context.Background(), "x"); got <- err }()
	require.NoError(t, l.Close())
	require.ErrorIs(t, <-got, lock.ErrClosed)
}
