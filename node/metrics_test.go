package node_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics/prommetrics"
	"github.com/quorumlock/quorumlock/node"
)

// documentedSeries reads the series metrics/DESIGN.md lists for the given
// backends ("all", "Raft").
func documentedSeries(t *testing.T, backends ...string) []string {
	b, err := os.ReadFile("../metrics/DESIGN.md")
	require.NoError(t, err)
	var out []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(quorumlock_[a-z_]+)` \\|[^|]*\\|[^|]*\\| (\\w+) \\|").FindAllStringSubmatch(string(b), -1) {
		for _, want := range backends {
			if m[2] == want {
				out = append(out, m[1])
			}
		}
	}
	require.NotEmpty(t, out, "no series for %v in metrics/DESIGN.md", backends)
	return out
}

// scrapeFamilies scrapes reg through its HTTP handler, as Prometheus would.
func scrapeFamilies(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// sum adds the values of family name's samples whose labels include
// match: counters, gauges, and histograms' sample counts.
func sum(fams map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	var total float64
	for _, m := range fams[name].GetMetric() {
		ok := true
		for k, v := range match {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			total += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			total += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

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

	fams := scrapeFamilies(t, reg)
	for _, name := range documentedSeries(t, "all", "Raft") {
		assert.Containsf(t, fams, name, "documented series %s is missing from the scrape", name)
	}
	for _, c := range []struct {
		name  string
		match map[string]string
		min   float64
	}{
		{"quorumlock_acquire_seconds", map[string]string{"call": "acquire", "outcome": "ok"}, 9},
		{"quorumlock_acquire_seconds", map[string]string{"call": "try", "outcome": "held"}, 1},
		{"quorumlock_acquire_seconds", map[string]string{"call": "acquire", "outcome": "canceled"}, 1},
		{"quorumlock_acquire_wait_seconds", map[string]string{"kind": "session"}, 9},
		{"quorumlock_grants_total", map[string]string{"kind": "ttl"}, 3}, // two granted, one adopted
		{"quorumlock_lease_ends_total", map[string]string{"reason": "released"}, 5},
		{"quorumlock_lease_ends_total", map[string]string{"reason": "expired"}, 1},
		{"quorumlock_lease_ends_total", map[string]string{"reason": "revoked"}, 1},
		{"quorumlock_lease_ends_total", map[string]string{"reason": "adopted"}, 1},
		{"quorumlock_hold_seconds", nil, 9},
		{"quorumlock_raft_propose_seconds", map[string]string{"outcome": "ok"}, 20},
		{"quorumlock_raft_apply_seconds", nil, 20},
		{"quorumlock_raft_forward_seconds", map[string]string{"outcome": "ok"}, 1},
		{"quorumlock_raft_leader_changes_total", nil, 1},
		{"quorumlock_raft_snapshot_installs_total", map[string]string{"node": c.ID(f2)}, 1},
		{"quorumlock_raft_term", nil, 1},
		{"quorumlock_raft_commit_index", nil, 20},
		{"quorumlock_raft_applied_index", nil, 20},
		{"quorumlock_store_sessions", nil, 1},
		{"quorumlock_transport_dials_total", nil, 1},
		{"quorumlock_transport_active_conns", nil, 1},
	} {
		assert.GreaterOrEqualf(t, sum(fams, c.name, c.match), c.min, "%s%v", c.name, c.match)
	}
	assert.Equal(t, 1.0, sum(fams, "quorumlock_raft_leader", nil), "one leader among the nodes")
	assert.Zero(t, sum(fams, "quorumlock_held", nil), "no lease held once all were released")
	assert.Zero(t, sum(fams, "quorumlock_waiting", nil), "nobody waiting")
	assert.Zero(t, sum(fams, "quorumlock_store_locks", nil), "no name held or waited for in the store")
	// Open: each node's own client (the Node is a Locker). a was closed,
	// b went with its node's abort (f2), whose own client came back with
	// the restart.
	assert.Equal(t, 3.0, sum(fams, "quorumlock_sessions", nil), "open sessions: the three nodes' own clients")
}
