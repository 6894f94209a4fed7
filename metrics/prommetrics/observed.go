package prommetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumlock/quorumlock/metrics"
)

// observed is the collector of the values a Raft node reports when read
// (metrics.Sink.Observe). Before Observe, or on an adapter, it reports
// nothing.
type observed struct {
	s      *Sink
	labels prometheus.Labels
}

// observedSeries are the series of metrics.Stats: name, help, type and how
// to read the value.
var observedSeries = []struct {
	name, help string
	counter    bool
	value      func(metrics.Stats) float64
}{
	{"raft_term", "Current Raft term of this node.", false, func(s metrics.Stats) float64 { return float64(s.Term) }},
	{"raft_leader", "1 if this node is the leader, else 0.", false, func(s metrics.Stats) float64 { return b2f(s.Leader) }},
	{"raft_commit_index", "Raft commit index known to this node.", false, func(s metrics.Stats) float64 { return float64(s.CommitIndex) }},
	{"raft_applied_index", "Last Raft index this node applied to its state.", false, func(s metrics.Stats) float64 { return float64(s.AppliedIndex) }},
	{"store_sessions", "Sessions in the store, as this node has applied it.", false, func(s metrics.Stats) float64 { return float64(s.StoreSessions) }},
	{"store_locks", "Names held or waited for in the store, as this node has applied it.", false, func(s metrics.Stats) float64 { return float64(s.StoreLocks) }},
	{"transport_dials_total", "Connections this node's transport dialled.", true, func(s metrics.Stats) float64 { return float64(s.Dials) }},
	{"transport_dial_failures_total", "Dials that failed (TCP, TLS or protocol).", true, func(s metrics.Stats) float64 { return float64(s.DialFailures) }},
	{"transport_conns_lost_total", "Pooled client connections that broke.", true, func(s metrics.Stats) float64 { return float64(s.ConnsLost) }},
	{"transport_pending_calls", "RPC calls waiting for their reply.", false, func(s metrics.Stats) float64 { return float64(s.PendingCalls) }},
	{"transport_active_conns", "Accepted connections open, at any stage.", false, func(s metrics.Stats) float64 { return float64(s.ActiveConns) }},
	{"transport_auth_failures_total", "Peers that proved no member identity.", true, func(s metrics.Stats) float64 { return float64(s.AuthFailures) }},
	{"transport_io_timeouts_total", "Frames not read or written within the I/O timeout.", true, func(s metrics.Stats) float64 { return float64(s.IOTimeouts) }},
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (o *observed) desc(i int) *prometheus.Desc {
	return prometheus.NewDesc("quorumlock_"+observedSeries[i].name, observedSeries[i].help, nil, o.labels)
}

// Describe implements prometheus.Collector.
func (o *observed) Describe(ch chan<- *prometheus.Desc) {
	for i := range observedSeries {
		ch <- o.desc(i)
	}
}

// Collect implements prometheus.Collector.
func (o *observed) Collect(ch chan<- prometheus.Metric) {
	read := o.s.read.Load()
	if read == nil {
		return
	}
	st := (*read)()
	for i, series := range observedSeries {
		typ := prometheus.GaugeValue
		if series.counter {
			typ = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(o.desc(i), typ, series.value(st))
	}
}
