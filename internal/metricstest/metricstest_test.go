package metricstest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExposition(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"a", "b"})
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "y_seconds", Help: "y"}, []string{"a"})
	reg.MustRegister(c, h)
	c.WithLabelValues("1", "p").Add(2)
	c.WithLabelValues("1", "q").Add(3)
	c.WithLabelValues("2", "p").Add(5)
	h.WithLabelValues("1").Observe(0.5)
	h.WithLabelValues("1").Observe(1.5)

	e := Scrape(t, reg)
	assert.ElementsMatch(t, []string{"x_total", "y_seconds"}, e.Families())
	v, ok := e.Value("x_total", "a", "1", "b", "q")
	require.True(t, ok)
	assert.Equal(t, 3.0, v)
	_, ok = e.Value("x_total", "a", "1")
	assert.False(t, ok, "Value wants the exact label set")
	assert.Equal(t, 5.0, e.Sum("x_total", "a", "1"))
	assert.Equal(t, 10.0, e.Sum("x_total"))
	assert.Equal(t, 2.0, e.Must(t, "y_seconds_count", "a", "1"))
	assert.Equal(t, 2.0, e.Sum("y_seconds_sum"))
	assert.Zero(t, e.Sum("absent_total"))
}

func TestDocumented(t *testing.T) {
	all := Documented(t)
	everywhere := Documented(t, "all")
	raft := Documented(t, "Raft")
	assert.Subset(t, all, everywhere)
	assert.Subset(t, all, raft)
	assert.Len(t, all, len(everywhere)+len(raft), "every series is for all backends or for Raft")
	assert.Contains(t, everywhere, "quorumlock_held")
}
