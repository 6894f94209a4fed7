package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/metricstest"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics/prommetrics"
)

// scrape reads reg the way Prometheus does: over HTTP from promhttp.
func scrape(t *testing.T, reg *prometheus.Registry) exposition {
	return exposition{metricstest.Scrape(t, reg)}
}

// exposition is a scrape with an assertion on one sample.
type exposition struct{ metricstest.Exposition }

// count asserts a sample's value.
func (e exposition) count(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	assert.Equalf(t, want, e.Must(t, name, labels...), "%s%v", name, labels)
}

// awaitSample scrapes reg until the sample of name with labels is want:
// a gauge moves just after the store has seen what moved it.
func awaitSample(t *testing.T, reg *prometheus.Registry, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ok := scrape(t, reg).Value(name, labels...)
		if ok && v == want {
			return
		}
		require.Falsef(t, time.Now().After(deadline), "%s%v = %v (present %v), want %v", name, labels, v, ok, want)
		<-time.After(5 * time.Millisecond)
	}
}

// newMeasured returns a Locker of cfg measured by a prommetrics Sink on
// reg with the constant label locker=label, closed when the test ends.
func newMeasured(t *testing.T, reg *prometheus.Registry, label string, cfg redis.Config) *redis.Locker {
	t.Helper()
	sink, err := prommetrics.New(reg, prometheus.Labels{"locker": label})
	require.NoError(t, err)
	cfg.Metrics = sink
	l, err := redis.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// awaitLease waits for an Acquire started by goAcquire.
func awaitLease(t *testing.T, out <-chan queued, what string) (lock.Lease, error) {
	t.Helper()
	select {
	case q := <-out:
		return q.lease, q.err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no answer after 30 s", what)
	}
	panic("unreachable")
}

// TestMetrics_Workload (issue 13, item 5): a workload on a Locker measured
// by prommetrics, scraped over HTTP: every series metrics/DESIGN.md marks
// "all" is there, each count is what the workload did, the gauges move
// while it runs and read 0 after Close. Redlock mode runs the same
// workload without Revoke and Adopt (unsupported there).
func TestMetrics_Workload(t *testing.T) {
	t.Run("Single", func(t *testing.T) {
		srv := testserver.StartRedis(t, testserver.RedisOptions{})
		metricsWorkload(t, redis.Config{Addr: srv.Addr(), SessionTTL: 2 * time.Second}, true)
	})
	t.Run("Redlock", func(t *testing.T) {
		_, addrs := startRedlock(t, 3, testserver.RedisOptions{})
		metricsWorkload(t, redis.Config{Addrs: addrs, SessionTTL: 2 * time.Second}, false)
	})
}

func metricsWorkload(t *testing.T, cfg redis.Config, ops bool) {
	reg := prometheus.NewPedanticRegistry()
	a := newMeasured(t, reg, "a", cfg) // the Locker under test
	b := newMeasured(t, reg, "b", cfg) // the other side: holds, revokes, adopts
	ctx := testCtx(t)
	A := func(labels ...string) []string { return append([]string{"locker", "a"}, labels...) }
	B := func(labels ...string) []string { return append([]string{"locker", "b"}, labels...) }
	sessionGrants, ttlGrants, acquired := 0., 0., 0.

	// A free name: granted at once, released.
	lease, err := a.Acquire(ctx, "m/free")
	require.NoError(t, err)
	require.NoError(t, lease.Release(ctx))
	sessionGrants++
	acquired++

	// A TryAcquire that finds the name held.
	busy, err := b.Acquire(ctx, "m/busy")
	require.NoError(t, err)
	_, err = a.TryAcquire(ctx, "m/busy")
	require.ErrorIs(t, err, lock.ErrHeld)

	// A queued wait: the waiting gauge shows it, the grant after the
	// holder's release is observed with the time it waited.
	out := goAcquire(ctx, a, "m/busy")
	waitWaiters(t, b, "m/busy", 1)
	awaitSample(t, reg, 1, "quorumlock_waiting", A()...)
	require.NoError(t, busy.Release(ctx))
	lease, err = awaitLease(t, out, "the queued Acquire")
	require.NoError(t, err)
	require.NoError(t, lease.Release(ctx))
	sessionGrants++
	acquired++

	// A TTL lease that expires.
	lease, err = a.Acquire(ctx, "m/ttl", lock.WithTTL(300*time.Millisecond))
	require.NoError(t, err)
	waitDone(t, lease, 30*time.Second, "the TTL lease")
	require.ErrorIs(t, lease.Err(), lock.ErrExpired)
	ttlGrants++
	acquired++

	if ops {
		// A revoke.
		lease, err = a.Acquire(ctx, "m/revoke")
		require.NoError(t, err)
		require.NoError(t, b.Revoke(ctx, "m/revoke", lease.Token()))
		waitDone(t, lease, 30*time.Second, "the revoked lease")
		require.ErrorIs(t, lease.Err(), lock.ErrRevoked)
		sessionGrants++
		acquired++

		// An adoption: a's lease ends adopted, b's adopted lease counts.
		lease, err = a.Acquire(ctx, "m/adopt", lock.WithTTL(time.Minute))
		require.NoError(t, err)
		adopted, err := b.Adopt(ctx, "m/adopt", lease.Token())
		require.NoError(t, err)
		waitDone(t, lease, 30*time.Second, "the adopted lease")
		require.ErrorIs(t, lease.Err(), lock.ErrAdopted)
		awaitSample(t, reg, 1, "quorumlock_held", B()...)
		require.NoError(t, adopted.Release(ctx))
		ttlGrants++
		acquired++
	}

	// A cancelled Acquire.
	blocker, err := b.Acquire(ctx, "m/cancel")
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	out = goAcquire(cctx, a, "m/cancel")
	waitWaiters(t, b, "m/cancel", 1)
	cancel()
	_, err = awaitLease(t, out, "the cancelled Acquire")
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, blocker.Release(ctx))

	// A lease still held when the Locker closes.
	held, err := a.Acquire(ctx, "m/at-close")
	require.NoError(t, err)
	sessionGrants++
	acquired++
	// (A lease's Done closes just before its end is measured: await.)
	awaitSample(t, reg, 1, "quorumlock_held", A()...)
	awaitSample(t, reg, 0, "quorumlock_held", B()...)
	awaitSample(t, reg, 0, "quorumlock_waiting", A()...)
	before := scrape(t, reg)
	before.count(t, 1, "quorumlock_sessions", A()...)
	before.count(t, 1, "quorumlock_sessions", B()...)

	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	require.ErrorIs(t, held.Err(), lock.ErrReleased)
	e := scrape(t, reg)

	for _, name := range metricstest.Documented(t, "all") {
		assert.Containsf(t, e.Families(), name, "series %s (metrics/DESIGN.md: all backends) missing", name)
	}
	e.count(t, acquired, "quorumlock_acquire_seconds_count", A("call", "acquire", "outcome", "ok")...)
	e.count(t, 1, "quorumlock_acquire_seconds_count", A("call", "try", "outcome", "held")...)
	e.count(t, 1, "quorumlock_acquire_seconds_count", A("call", "acquire", "outcome", "canceled")...)
	e.count(t, sessionGrants, "quorumlock_grants_total", A("kind", "session")...)
	e.count(t, ttlGrants, "quorumlock_grants_total", A("kind", "ttl")...)
	e.count(t, sessionGrants, "quorumlock_acquire_wait_seconds_count", A("kind", "session")...)
	e.count(t, ttlGrants, "quorumlock_acquire_wait_seconds_count", A("kind", "ttl")...)
	assert.Positive(t, e.Must(t, "quorumlock_acquire_wait_seconds_sum", A("kind", "session")...), "the queued Acquire waited")
	assert.Zero(t, e.Must(t, "quorumlock_acquire_wait_seconds_sum", A("kind", "ttl")...), "TTL leases were granted at once")

	ends := map[[2]string]float64{
		{"session", "released"}: sessionGrants, // the free, queued and at-close leases
		{"ttl", "expired"}:      1,
	}
	if ops {
		ends[[2]string{"session", "released"}]--
		ends[[2]string{"session", "revoked"}] = 1
		ends[[2]string{"ttl", "adopted"}] = 1
	}
	for kr, n := range ends {
		e.count(t, n, "quorumlock_lease_ends_total", A("kind", kr[0], "reason", kr[1])...)
		e.count(t, n, "quorumlock_hold_seconds_count", A("kind", kr[0], "reason", kr[1])...)
	}
	assert.GreaterOrEqual(t, e.Must(t, "quorumlock_hold_seconds_sum", A("kind", "ttl", "reason", "expired")...), 0.25,
		"a 300 ms TTL lease is held until its deadline (TTL − margin)")
	for _, g := range []string{"quorumlock_held", "quorumlock_waiting", "quorumlock_sessions"} {
		e.count(t, 0, g, A()...)
		e.count(t, 0, g, B()...)
	}

	// The other side: b's grants and ends balance too.
	bSession := 2. // m/busy, m/cancel
	e.count(t, bSession, "quorumlock_grants_total", B("kind", "session")...)
	e.count(t, bSession, "quorumlock_lease_ends_total", B("kind", "session", "reason", "released")...)
	if ops {
		e.count(t, 1, "quorumlock_grants_total", B("kind", "ttl")...)
		e.count(t, 1, "quorumlock_acquire_wait_seconds_count", B("kind", "ttl")...)
		e.count(t, 1, "quorumlock_lease_ends_total", B("kind", "ttl", "reason", "released")...)
	}
}
