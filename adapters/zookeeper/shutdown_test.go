package zookeeper_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics/prommetrics"
)

// shutdownSubject is a measured Locker holding a session lease and a TTL
// lease, with an Acquire queued behind another Locker's lease.
type shutdownSubject struct {
	l               *zookeeper.Locker
	other           *zookeeper.Locker
	scrape          scraper
	logs            *logRecorder
	session, ttl    lock.Lease
	busy            lock.Lease // other's
	queued          <-chan grant
	sessName, ttlNm string
}

func newShutdownSubject(t *testing.T, servers []string, prefix string, timeout time.Duration) *shutdownSubject {
	reg := prometheus.NewPedanticRegistry()
	sink, err := prommetrics.New(reg, nil)
	require.NoError(t, err)
	s := &shutdownSubject{logs: &logRecorder{}, scrape: newScraper(t, reg), sessName: prefix + "-session", ttlNm: prefix + "-ttl"}
	s.l = startLocker(t, zookeeper.Config{Servers: servers, SessionTimeout: timeout, Metrics: sink, Logger: slog.New(s.logs)})
	s.other = newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	s.session, err = s.l.Acquire(ctx, s.sessName)
	require.NoError(t, err)
	s.ttl, err = s.l.Acquire(ctx, s.ttlNm, lock.WithTTL(time.Hour))
	require.NoError(t, err)
	s.busy, err = s.other.Acquire(ctx, prefix+"-busy")
	require.NoError(t, err)
	s.queued = goAcquire(ctx, s.l, prefix+"-busy")
	eventually(t, 10*time.Second, "the Acquire is queued", func() bool { return len(children(t, s.other, prefix+"-busy")) == 2 })
	eventually(t, 10*time.Second, "the waiting gauge reads 1", func() bool { return s.scrape.value("quorumlock_waiting") == 1 })
	return s
}

// ended checks what every Shutdown does, whatever its ctx: the leases end
// locally with ErrReleased, the queued Acquire returns ErrClosed, the
// gauges read 0, later calls fail with ErrClosed and Close does nothing.
func (s *shutdownSubject) ended(t *testing.T) {
	for _, le := range []lock.Lease{s.session, s.ttl} {
		select {
		case <-le.Done():
		default:
			t.Fatalf("%s: Done not closed by Shutdown", le.Name())
		}
		assert.ErrorIs(t, le.Err(), lock.ErrReleased, le.Name())
	}
	select {
	case g := <-s.queued:
		require.ErrorIs(t, g.err, lock.ErrClosed, "the queued Acquire")
	case <-time.After(30 * time.Second):
		t.Fatal("the queued Acquire did not return after Shutdown")
	}
	for _, g := range []string{"quorumlock_held", "quorumlock_waiting", "quorumlock_sessions"} {
		assert.Zero(t, s.scrape.value(g), "%s after Shutdown", g)
	}
	_, err := s.l.TryAcquire(context.Background(), s.sessName)
	require.ErrorIs(t, err, lock.ErrClosed)
	require.NoError(t, s.l.Close(), "Close after Shutdown does nothing")
	require.NoError(t, s.l.Shutdown(context.Background()), "a second Shutdown does nothing")
}

// shutdownWithin runs l.Shutdown(ctx) and fails t if it has not returned
// after 30 s (a liveness bound, not a timing assertion: the Shutdown under
// test is expected back at once).
func shutdownWithin(t *testing.T, l *zookeeper.Locker, ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- l.Shutdown(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	panic("unreachable")
}

// testShutdownReleases (issue 13, item 7): with the store reachable,
// Shutdown withdraws the queued claim and deletes every lease's node, TTL
// leases too, before it returns.
func testShutdownReleases(t *testing.T, servers []string) {
	s := newShutdownSubject(t, servers, "shutdown-releases", stableTimeout)
	ctx := ctxFor(t, time.Minute)
	require.NoError(t, s.l.Shutdown(ctx))
	for _, name := range []string{s.sessName, s.ttlNm} {
		info, err := s.other.Inspect(ctx, name)
		require.NoError(t, err)
		assert.False(t, info.Held, "%s deleted in the store by Shutdown", name)
	}
	assert.Len(t, children(t, s.other, "shutdown-releases-busy"), 1, "the queued claim withdrawn by Shutdown")
	s.ended(t)
	_, warned := s.logs.first(slog.LevelWarn)
	assert.False(t, warned, "a clean Shutdown logs no Warn")
	require.NoError(t, s.busy.Release(ctx))
}

// testShutdownEndedCtx (issue 13, item 7): a Shutdown whose ctx has ended,
// on a paused server, returns ctx's error without waiting for the store
// (the test's liveness bound fails if it waits): the leases end locally,
// the queued Acquire returns ErrClosed, and a Warn line says what was left
// to the store. After the server resumes, the session's nodes go with the
// session and the TTL lease stays until its TTL, so another Locker adopts
// it and releases it.
func testShutdownEndedCtx(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	s := newShutdownSubject(t, servers, "shutdown-ended", faultTimeout)
	z.Pause()
	t.Cleanup(z.Resume)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	err := shutdownWithin(t, s.l, ended)
	require.ErrorIs(t, err, context.Canceled)
	s.ended(t)
	msg, warned := s.logs.first(slog.LevelWarn)
	assert.True(t, warned, "a Warn line says what was left to the store")
	assert.Equal(t, "zookeeper lock: shutdown: left to the store", msg)

	z.Resume()
	waitWritable(t, servers)
	ctx := ctxFor(t, time.Minute)
	le, err := s.other.Acquire(ctx, s.sessName)
	require.NoError(t, err, "the session lease went with its session")
	require.NoError(t, le.Release(ctx))
	info, err := s.other.Inspect(ctx, s.ttlNm)
	require.NoError(t, err)
	require.True(t, info.Held, "the TTL lease stays in the store until its TTL")
	adopted, err := s.other.Adopt(ctx, s.ttlNm, s.ttl.Token())
	require.NoError(t, err)
	require.NoError(t, adopted.Release(ctx))
	require.NoError(t, s.busy.Release(ctx))
}

// testShutdownHandOver: a claim granted, or an adoption that lands, once
// Shutdown has begun is not handed to its caller: the lease ends with
// ErrReleased, its node is deleted and the call fails with ErrClosed.
func testShutdownHandOver(t *testing.T, servers []string) {
	l := newLocker(t, servers, stableTimeout)
	other := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	session, err := l.Acquire(ctx, "handover-session")
	require.NoError(t, err)
	ttl, err := l.Acquire(ctx, "handover-ttl", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	for _, le := range []lock.Lease{session, ttl} {
		require.ErrorIs(t, zookeeper.HandOverAfterShutdownBegan(l, le), lock.ErrClosed, le.Name())
		assert.ErrorIs(t, le.Err(), lock.ErrReleased, le.Name())
		info, err := other.Inspect(ctx, le.Name())
		require.NoError(t, err)
		assert.False(t, info.Held, "%s: its node deleted", le.Name())
	}
	require.NoError(t, l.Shutdown(ctx))
}

// testShutdownEndedCtxSharedConn: on a caller's Config.Conn, which
// Shutdown does not close, nothing takes the nodes of the Locker's
// session away: a Shutdown whose ctx has ended still withdraws the queued
// claim and deletes the lease's node, in the background, within the
// clean-up timeout. They used to be cut off with ctx and stay, held by
// nobody, for as long as the caller's connection lived (found in review).
// The connection is cut while Shutdown runs, so that no delete can win
// the race with the ended ctx, and healed well within its session timeout.
func testShutdownEndedCtxSharedConn(t *testing.T, servers []string) {
	l, g := newGatedLocker(t, servers, 4*time.Second)
	other := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	held, err := l.Acquire(ctx, "shared-held")
	require.NoError(t, err)
	busy, err := other.Acquire(ctx, "shared-busy")
	require.NoError(t, err)
	queued := goAcquire(ctx, l, "shared-busy")
	eventually(t, 10*time.Second, "the Acquire is queued", func() bool { return len(children(t, other, "shared-busy")) == 2 })

	g.Cut()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	err = shutdownWithin(t, l, ended)
	g.Heal()
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, (<-queued).err, lock.ErrClosed)
	require.ErrorIs(t, held.Err(), lock.ErrReleased)
	_, err = zookeeper.Conn(l).Sync("/")
	require.NoError(t, err, "the caller's connection is back on its session")

	require.NoError(t, busy.Release(ctx))
	for _, name := range []string{"shared-held", "shared-busy"} {
		eventually(t, 30*time.Second, name+" free again", func() bool {
			info, err := other.Inspect(ctx, name)
			return err == nil && !info.Held
		})
	}
}
