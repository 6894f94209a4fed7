package prommetrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/metricstest"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
)

func exercise(s *Sink) {
	s.Acquire(false, metrics.OutcomeOK, 3*time.Millisecond)
	s.Acquire(true, metrics.OutcomeHeld, time.Millisecond)
	s.Granted(lock.KindSession, 2*time.Millisecond)
	s.Granted(lock.KindTTL, 0)
	s.Ended(lock.KindSession, metrics.ReasonRevoked, time.Second)
	s.Waiting(+1)
	s.Holding(+2)
	s.Holding(-1)
	s.Sessions(+1)
	s.Proposed(metrics.OutcomeOK, time.Millisecond)
	s.Applied(50 * time.Microsecond)
	s.Forwarded(metrics.OutcomeNoQuorum, time.Second)
	s.LeaderChanged(true)
	s.SnapshotInstalled()
	s.Observe(func() metrics.Stats {
		return metrics.Stats{
			Term: 7, Leader: true, CommitIndex: 40, AppliedIndex: 39, StoreSessions: 3, StoreLocks: 2,
			Dials: 5, DialFailures: 1, ConnsLost: 1, PendingCalls: 2, ActiveConns: 4, AuthFailures: 1, IOTimeouts: 1,
		}
	})
}

// TestSeriesDocumented: the series a scrape shows after every Sink method
// was called are exactly the documented ones.
func TestSeriesDocumented(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s, err := New(reg, prometheus.Labels{"node": "n1"})
	require.NoError(t, err)
	exercise(s)
	scraped := metricstest.Scrape(t, reg).Families()
	assert.ElementsMatch(t, metricstest.Documented(t), scraped, "series in metrics/DESIGN.md vs a scrape")
}

func TestValues(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s, err := New(reg, prometheus.Labels{"node": "n1"})
	require.NoError(t, err)
	exercise(s)
	text := string(metricstest.Scrape(t, reg))
	for _, line := range []string{
		`quorumlock_acquire_seconds_count{call="acquire",node="n1",outcome="ok"} 1`,
		`quorumlock_acquire_seconds_count{call="try",node="n1",outcome="held"} 1`,
		`quorumlock_grants_total{kind="session",node="n1"} 1`,
		`quorumlock_grants_total{kind="ttl",node="n1"} 1`,
		`quorumlock_lease_ends_total{kind="session",node="n1",reason="revoked"} 1`,
		`quorumlock_hold_seconds_sum{kind="session",node="n1",reason="revoked"} 1`,
		`quorumlock_held{node="n1"} 1`,
		`quorumlock_waiting{node="n1"} 1`,
		`quorumlock_sessions{node="n1"} 1`,
		`quorumlock_raft_forward_seconds_count{node="n1",outcome="no_quorum"} 1`,
		`quorumlock_raft_leader_changes_total{node="n1"} 1`,
		`quorumlock_raft_snapshot_installs_total{node="n1"} 1`,
		`quorumlock_raft_term{node="n1"} 7`,
		`quorumlock_raft_leader{node="n1"} 1`,
		`quorumlock_raft_applied_index{node="n1"} 39`,
		`quorumlock_store_sessions{node="n1"} 3`,
		`quorumlock_transport_pending_calls{node="n1"} 2`,
	} {
		assert.Contains(t, strings.Split(text, "\n"), line)
	}

	s.Observe(nil)
	assert.NotContains(t, string(metricstest.Scrape(t, reg)), "quorumlock_raft_term", "Observe(nil) removes the read values")
}

// TestTwoInstances: two Sinks on one registry need distinct constant
// labels; the same labels twice are refused, not merged.
func TestTwoInstances(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	_, err := New(reg, prometheus.Labels{"node": "n1"})
	require.NoError(t, err)
	_, err = New(reg, prometheus.Labels{"node": "n2"})
	require.NoError(t, err)
	_, err = New(reg, prometheus.Labels{"node": "n1"})
	var already prometheus.AlreadyRegisteredError
	assert.ErrorAs(t, err, &already)
}
