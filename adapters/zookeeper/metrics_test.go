package zookeeper_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/internal/metricstest"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics/prommetrics"
)

// scraper reads a registry the way Prometheus does.
type scraper struct {
	t   *testing.T
	reg *prometheus.Registry
}

func newScraper(t *testing.T, reg *prometheus.Registry) scraper { return scraper{t: t, reg: reg} }

// value is the sample of series name with exactly labels ("k", "v"
// pairs); -1 if there is none.
func (s scraper) value(name string, labels ...string) float64 {
	s.t.Helper()
	v, ok := metricstest.Scrape(s.t, s.reg).Value(name, labels...)
	if !ok {
		return -1
	}
	return v
}

// testMetricsWorkload runs a workload on a measured Locker and checks every
// series metrics/DESIGN.md marks "all" after it, and the gauges after
// Close.
func testMetricsWorkload(t *testing.T, servers []string) {
	reg := prometheus.NewPedanticRegistry()
	sink, err := prommetrics.New(reg, nil)
	require.NoError(t, err)
	m := startLocker(t, zookeeper.Config{Servers: servers, SessionTimeout: stableTimeout, Metrics: sink})
	other := newLocker(t, servers, stableTimeout)
	s := newScraper(t, reg)
	ctx := ctxFor(t, 2*time.Minute)

	// A free name: granted at once, released.
	le, err := m.Acquire(ctx, "metrics-free")
	require.NoError(t, err)
	assert.Equal(t, 1.0, s.value("quorumlock_sessions"), "a lease proves the session")
	assert.Equal(t, 1.0, s.value("quorumlock_held"))
	require.NoError(t, le.Release(ctx))

	// TryAcquire of a held name, then a queued wait that is granted.
	held, err := other.Acquire(ctx, "metrics-held")
	require.NoError(t, err)
	_, err = m.TryAcquire(ctx, "metrics-held")
	require.ErrorIs(t, err, lock.ErrHeld)
	queued := goAcquire(ctx, m, "metrics-held")
	eventually(t, 30*time.Second, "the Acquire waits in the queue", func() bool { return s.value("quorumlock_waiting") == 1 })
	require.NoError(t, held.Release(ctx))
	g := <-queued
	require.NoError(t, g.err)
	assert.Equal(t, 0.0, s.value("quorumlock_waiting"))
	require.NoError(t, g.lease.Release(ctx))

	// A cancelled Acquire behind a holder.
	held, err = other.Acquire(ctx, "metrics-held")
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = m.Acquire(short, "metrics-held")
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, 0.0, s.value("quorumlock_waiting"), "a cancelled wait leaves the gauge")
	require.NoError(t, held.Release(ctx))

	// A TTL lease that expires, one that is revoked, one adopted away.
	expiring, err := m.Acquire(ctx, "metrics-ttl", lock.WithTTL(time.Second))
	require.NoError(t, err)
	waitDone(t, expiring, 30*time.Second, "a TTL lease without Refresh")
	revoked, err := m.Acquire(ctx, "metrics-revoke", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	require.NoError(t, other.Revoke(ctx, "metrics-revoke", revoked.Token()))
	require.ErrorIs(t, revoked.Refresh(ctx), lock.ErrNotHeld)
	adoptedAway, err := m.Acquire(ctx, "metrics-adopt", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	theirs, err := other.Adopt(ctx, "metrics-adopt", adoptedAway.Token())
	require.NoError(t, err)
	waitDone(t, adoptedAway, 30*time.Second, "a lease adopted by another Locker")
	// An adopted lease counts for the adopter.
	mine, err := m.Adopt(ctx, "metrics-adopt", theirs.Token())
	require.NoError(t, err)
	assert.Equal(t, 1.0, s.value("quorumlock_held"), "the adopted lease")
	require.NoError(t, mine.Release(ctx))

	// One lease still held at Close.
	_, err = m.Acquire(ctx, "metrics-close")
	require.NoError(t, err)

	assert.Equal(t, 6.0, s.value("quorumlock_acquire_seconds_count", "call", "acquire", "outcome", "ok"))
	assert.Equal(t, 1.0, s.value("quorumlock_acquire_seconds_count", "call", "try", "outcome", "held"))
	assert.Equal(t, 1.0, s.value("quorumlock_acquire_seconds_count", "call", "acquire", "outcome", "canceled"))
	assert.Equal(t, 3.0, s.value("quorumlock_grants_total", "kind", "session"))
	assert.Equal(t, 4.0, s.value("quorumlock_grants_total", "kind", "ttl"), "three TTL grants and one adoption")
	assert.Equal(t, 3.0, s.value("quorumlock_acquire_wait_seconds_count", "kind", "session"))
	assert.Greater(t, s.value("quorumlock_acquire_wait_seconds_sum", "kind", "session"), 0.0, "the queued Acquire waited")
	assert.Equal(t, 0.0, s.value("quorumlock_acquire_wait_seconds_sum", "kind", "ttl"), "the TTL grants did not wait")
	assert.Equal(t, 2.0, s.value("quorumlock_lease_ends_total", "kind", "session", "reason", "released"))
	assert.Equal(t, 1.0, s.value("quorumlock_lease_ends_total", "kind", "ttl", "reason", "expired"))
	assert.Equal(t, 1.0, s.value("quorumlock_lease_ends_total", "kind", "ttl", "reason", "revoked"))
	assert.Equal(t, 1.0, s.value("quorumlock_lease_ends_total", "kind", "ttl", "reason", "adopted"))
	assert.Equal(t, 1.0, s.value("quorumlock_lease_ends_total", "kind", "ttl", "reason", "released"))
	assert.Equal(t, 2.0, s.value("quorumlock_hold_seconds_count", "kind", "session", "reason", "released"))
	assert.Greater(t, s.value("quorumlock_hold_seconds_sum", "kind", "ttl", "reason", "expired"), 0.0)
	assert.Equal(t, 1.0, s.value("quorumlock_held"))
	assert.Equal(t, 1.0, s.value("quorumlock_sessions"))
	assert.Equal(t, 0.0, s.value("quorumlock_waiting"))
	families := metricstest.Scrape(t, reg).Families()
	for _, name := range metricstest.Documented(t, "all") {
		assert.Containsf(t, families, name, "series %s (metrics/DESIGN.md: all backends) missing", name)
	}

	require.NoError(t, m.Close())
	assert.Equal(t, 3.0, s.value("quorumlock_lease_ends_total", "kind", "session", "reason", "released"), "Close released the last lease")
	for _, gauge := range []string{"quorumlock_held", "quorumlock_sessions", "quorumlock_waiting"} {
		assert.Equal(t, 0.0, s.value(gauge), gauge+" after Close")
	}
}
