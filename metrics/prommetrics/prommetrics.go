// Package prommetrics implements metrics.Sink on Prometheus
// (github.com/prometheus/client_golang). New registers the series on the
// Registerer it is given, never on the global one. The series and their
// meaning are listed in metrics/DESIGN.md.
package prommetrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
)

// Sink is a metrics.Sink that feeds Prometheus series.
type Sink struct {
	acquire       *prometheus.HistogramVec
	wait          *prometheus.HistogramVec
	hold          *prometheus.HistogramVec
	grants        *prometheus.CounterVec
	ends          *prometheus.CounterVec
	waiting       prometheus.Gauge
	holding       prometheus.Gauge
	sessions      prometheus.Gauge
	propose       *prometheus.HistogramVec
	apply         prometheus.Histogram
	forward       *prometheus.HistogramVec
	leaderChanges prometheus.Counter
	installs      prometheus.Counter

	read atomic.Pointer[func() metrics.Stats]
}

var _ metrics.Sink = (*Sink)(nil)

// Buckets: lock calls range from a local grant (well under a millisecond)
// to a long wait in a queue; Raft commits from a millisecond on loopback to
// seconds on a troubled WAN.
var (
	callBuckets = prometheus.ExponentialBuckets(0.0005, 4, 10) // 0.5 ms … ~131 s
	holdBuckets = prometheus.ExponentialBuckets(0.001, 4, 12)  // 1 ms … ~70 min
	raftBuckets = prometheus.ExponentialBuckets(0.0001, 4, 10) // 0.1 ms … ~26 s
)

// New makes a Sink and registers its series on reg, with constLabels on
// every series (use them to tell apart several backend instances in one
// process, e.g. {"node": "n1"}). It fails if reg refuses a series (the same
// series with the same constant labels registered twice).
func New(reg prometheus.Registerer, constLabels prometheus.Labels) (*Sink, error) {
	hist := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "quorumlock", Name: name, Help: help, Buckets: buckets, ConstLabels: constLabels,
		}, labels)
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "quorumlock", Name: name, Help: help, ConstLabels: constLabels,
		}, labels)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "quorumlock", Name: name, Help: help, ConstLabels: constLabels,
		})
	}
	s := &Sink{
		acquire: hist("acquire_seconds", "Duration of Acquire and TryAcquire calls, by call and outcome.", callBuckets, "call", "outcome"),
		wait:    hist("acquire_wait_seconds", "Time granted Acquire calls waited in the queue, by lease kind.", callBuckets, "kind"),
		hold:    hist("hold_seconds", "How long leases were held, by lease kind and end reason.", holdBuckets, "kind", "reason"),
		grants:  counter("grants_total", "Leases granted, by lease kind.", "kind"),
		ends: counter("lease_ends_total",
			"Leases ended, by lease kind and reason (released, expired, revoked, adopted, lost).", "kind", "reason"),
		waiting:  gauge("waiting", "Acquire calls of this instance waiting in a queue."),
		holding:  gauge("held", "Leases this instance holds."),
		sessions: gauge("sessions", "Sessions this instance keeps open."),
		propose:  hist("raft_propose_seconds", "Commands proposed by this node as leader, from raft.Apply to the applied result, by outcome.", raftBuckets, "outcome"),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "quorumlock", Name: "raft_apply_seconds", Help: "Time the state machine took to apply one entry.",
			Buckets: raftBuckets, ConstLabels: constLabels,
		}),
		forward:       hist("raft_forward_seconds", "Requests this node forwarded to the leader, by outcome.", raftBuckets, "outcome"),
		leaderChanges: counter("raft_leader_changes_total", "Times this node became or stopped being leader.").WithLabelValues(),
		installs:      counter("raft_snapshot_installs_total", "Snapshots installed from the leader, or a backup restored on this node.").WithLabelValues(),
	}
	for _, c := range []prometheus.Collector{
		s.acquire, s.wait, s.hold, s.grants, s.ends, s.waiting, s.holding, s.sessions,
		s.propose, s.apply, s.forward, s.leaderChanges, s.installs, &observed{s: s, labels: constLabels},
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func call(try bool) string {
	if try {
		return "try"
	}
	return "acquire"
}

// Acquire implements metrics.Sink.
func (s *Sink) Acquire(try bool, outcome metrics.Outcome, latency time.Duration) {
	s.acquire.WithLabelValues(call(try), string(outcome)).Observe(latency.Seconds())
}

// Granted implements metrics.Sink.
func (s *Sink) Granted(kind lock.Kind, waited time.Duration) {
	s.grants.WithLabelValues(kind.String()).Inc()
	s.wait.WithLabelValues(kind.String()).Observe(waited.Seconds())
}

// Ended implements metrics.Sink.
func (s *Sink) Ended(kind lock.Kind, reason metrics.Reason, held time.Duration) {
	s.ends.WithLabelValues(kind.String(), string(reason)).Inc()
	s.hold.WithLabelValues(kind.String(), string(reason)).Observe(held.Seconds())
}

// Waiting implements metrics.Sink.
func (s *Sink) Waiting(delta int) { s.waiting.Add(float64(delta)) }

// Holding implements metrics.Sink.
func (s *Sink) Holding(delta int) { s.holding.Add(float64(delta)) }

// Sessions implements metrics.Sink.
func (s *Sink) Sessions(delta int) { s.sessions.Add(float64(delta)) }

// Proposed implements metrics.Sink.
func (s *Sink) Proposed(outcome metrics.Outcome, latency time.Duration) {
	s.propose.WithLabelValues(string(outcome)).Observe(latency.Seconds())
}

// Applied implements metrics.Sink.
func (s *Sink) Applied(latency time.Duration) { s.apply.Observe(latency.Seconds()) }

// Forwarded implements metrics.Sink.
func (s *Sink) Forwarded(outcome metrics.Outcome, latency time.Duration) {
	s.forward.WithLabelValues(string(outcome)).Observe(latency.Seconds())
}

// LeaderChanged implements metrics.Sink.
func (s *Sink) LeaderChanged(bool) { s.leaderChanges.Inc() }

// SnapshotInstalled implements metrics.Sink.
func (s *Sink) SnapshotInstalled() { s.installs.Inc() }

// Observe implements metrics.Sink.
func (s *Sink) Observe(read func() metrics.Stats) {
	if read == nil {
		s.read.Store(nil)
		return
	}
	s.read.Store(&read)
}
