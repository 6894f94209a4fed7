package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/metricstest"
	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics/prommetrics"
	"github.com/quorumlock/quorumlock/node"
)

// TestCluster_MetricsWorkload (issue 13, item 5): a workload that makes
// every documented event happen on a 3-node cluster, then one scrape of
// the nodes' Prometheus sinks: every series documented for the Raft
// backend is there, with the value the workload implies.
func TestCluster_MetricsWorkload(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	sinks := map[string]*prommetrics.Sink{}
	c := testcluster.Start(t, testcluster.Options{Size: 3, Durable: true, Edit: func(i int, cfg *node.Config) {
		s := sinks[cfg.ID]
		if s == nil {
			var err error
			s, err = prommetrics.New(reg, prometheus.Labels{"node": cfg.ID})
			require.NoError(t, err)
			sinks[cfg.ID] = s
		}
		cfg.Metrics = s
	}})
	ctx := clusterCtx(t)
	li := c.Leader()
	f1, f2 := (li+1)%3, (li+2)%3
	a, err := c.NewLocker(ctx, f1) // through a follower: forwarded
	require.NoError(t, err)
	b, err := c.NewLocker(ctx, f2)
	require.NoError(t, err)

	// A grant, a TryAcquire that finds the name held, a queued wait and a
	// release that hands the name on.
	held, err := a.Acquire(ctx, "m/q")
	require.NoError(t, err)
	_, err = b.TryAcquire(ctx, "m/q")
	require.ErrorIs(t, err, lock.ErrHeld)
	got := make(chan lock.Lease, 1)
	go func() {
		l, err := b.Acquire(ctx, "m/q")
		assert.NoError(t, err)
		got <- l
	}()
	require.Eventually(t, func() bool {
		info, err := a.Inspect(ctx, "m/q")
		return err == nil && info.Waiters == 1
	}, 20*time.Second, 5*time.Millisecond)
	require.NoError(t, held.Release(ctx))
	require.NoError(t, (<-got).Release(ctx))

	// A cancelled wait.
	held, err = a.Acquire(ctx, "m/cancel")
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { _, err := b.Acquire(cctx, "m/cancel"); errc <- err }()
	require.Eventually(t, func() bool {
		info, err := a.Inspect(ctx, "m/cancel")
		return err == nil && info.Waiters == 1
	}, 20*time.Second, 5*time.Millisecond)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	require.NoError(t, held.Release(ctx))

	// A TTL lease that expires, one revoked, one adopted.
	ttl, err := a.Acquire(ctx, "m/ttl", lock.WithTTL(200*time.Millisecond))
	require.NoError(t, err)
	<-ttl.Done()
	require.ErrorIs(t, ttl.Err(), lock.ErrExpired)
	rv, err := a.Acquire(ctx, "m/revoke")
	require.NoError(t, err)
	require.NoError(t, b.(lock.Revoker).Revoke(ctx, "m/revoke", rv.Token()))
	require.ErrorIs(t, rv.Err(), lock.ErrRevoked)
	old, err := a.Acquire(ctx, "m/adopt", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	adopted, err := b.(lock.Adopter).Adopt(ctx, "m/adopt", old.Token())
	require.NoError(t, err)
	select {
	case <-old.Done():
	case <-ctx.Done():
		t.Fatal("the previous holder never learnt of the adoption")
	}
	require.NoError(t, adopted.Release(ctx))

	// A snapshot installed on a follower that fell behind.
	require.NoError(t, c.Stop(f2, (*node.Node).Abort))
	for i := range 20 {
		l, err := a.Acquire(ctx, fmt.Sprintf("m/fill-%d", i))
		require.NoError(t, err)
		require.NoError(t, l.Release(ctx))
	}
	r := node.RaftOf(c.Node(li))
	reloadable := r.ReloadableConfig()
	reloadable.TrailingLogs = 1
	require.NoError(t, r.ReloadConfig(reloadable))
	require.NoError(t, r.Snapshot().Error())
	c.Restart(f2)
	require.Eventually(t, func() bool { return c.Node(f2).Stats().SnapshotRestores > 0 }, 20*time.Second, 5*time.Millisecond)
	require.NoError(t, a.Close())

	e := metricstest.Scrape(t, reg)
	for _, name := range metricstest.Documented(t, "all", "Raft") {
		assert.Containsf(t, e.Families(), name, "documented series %s is missing from the scrape", name)
	}
	for _, c := range []struct {
		name  string
		match []string
		min   float64
	}{
		{"quorumlock_acquire_seconds_count", []string{"call", "acquire", "outcome", "ok"}, 9},
		{"quorumlock_acquire_seconds_count", []string{"call", "try", "outcome", "held"}, 1},
		{"quorumlock_acquire_seconds_count", []string{"call", "acquire", "outcome", "canceled"}, 1},
		{"quorumlock_acquire_wait_seconds_count", []string{"kind", "session"}, 9},
		{"quorumlock_grants_total", []string{"kind", "ttl"}, 3}, // two granted, one adopted
		{"quorumlock_lease_ends_total", []string{"reason", "released"}, 5},
		{"quorumlock_lease_ends_total", []string{"reason", "expired"}, 1},
		{"quorumlock_lease_ends_total", []string{"reason", "revoked"}, 1},
		{"quorumlock_lease_ends_total", []string{"reason", "adopted"}, 1},
		{"quorumlock_hold_seconds_count", nil, 9},
		{"quorumlock_raft_propose_seconds_count", []string{"outcome", "ok"}, 20},
		{"quorumlock_raft_apply_seconds_count", nil, 20},
		{"quorumlock_raft_forward_seconds_count", []string{"outcome", "ok"}, 1},
		{"quorumlock_raft_leader_changes_total", nil, 1},
		{"quorumlock_raft_snapshot_installs_total", []string{"node", c.ID(f2)}, 1},
		{"quorumlock_raft_term", nil, 1},
		{"quorumlock_raft_commit_index", nil, 20},
		{"quorumlock_raft_applied_index", nil, 20},
		{"quorumlock_store_sessions", nil, 1},
		{"quorumlock_transport_dials_total", nil, 1},
		{"quorumlock_transport_active_conns", nil, 1},
	} {
		assert.GreaterOrEqualf(t, e.Sum(c.name, c.match...), c.min, "%s%v", c.name, c.match)
	}
	assert.Equal(t, 1.0, e.Sum("quorumlock_raft_leader"), "one leader among the nodes")
	assert.Zero(t, e.Sum("quorumlock_held"), "no lease held once all were released")
	assert.Zero(t, e.Sum("quorumlock_waiting"), "nobody waiting")
	assert.Zero(t, e.Sum("quorumlock_store_locks"), "no name held or waited for in the store")
	// Open: each node's own client (the Node is a Locker). a was closed,
	// b went with its node's abort (f2), whose own client came back with
	// the restart.
	assert.Equal(t, 3.0, e.Sum("quorumlock_sessions"), "open sessions: the three nodes' own clients")
}
