// Package metricstest reads a Prometheus registry the way Prometheus does
// (over HTTP, in the text format) and the series table of
// metrics/DESIGN.md, for the metrics tests of every backend. Tests only.
package metricstest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
)

// Documented returns the series metrics/DESIGN.md lists whose backends
// column is one of backends ("all", "Raft"); with no backends, every
// series of the table.
func Documented(t testing.TB, backends ...string) []string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	require.True(t, ok)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "..", "metrics", "DESIGN.md"))
	require.NoError(t, err)
	var out []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(quorumlock_[a-z_]+)` \\|[^|]*\\|[^|]*\\| (\\w+) \\|").FindAllStringSubmatch(string(b), -1) {
		if len(backends) == 0 || slices.Contains(backends, m[2]) {
			out = append(out, m[1])
		}
	}
	require.NotEmpty(t, out, "no series for %v in metrics/DESIGN.md", backends)
	return out
}

// Exposition is one scrape in Prometheus's text format.
type Exposition string

// Scrape reads g through promhttp's handler over HTTP.
func Scrape(t testing.TB, g prometheus.Gatherer) Exposition {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	resp, err := http.Get(srv.URL) //nolint:noctx // a test server
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return Exposition(b)
}

// Families returns the names of the metric families in the scrape.
func (e Exposition) Families() []string {
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllStringSubmatch(string(e), -1) {
		out = append(out, m[1])
	}
	return out
}

// sample is one line of the scrape.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func (e Exposition) samples(name string) []sample {
	var out []sample
	for _, line := range strings.Split(string(e), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series, val, ok := strings.Cut(line, " ")
		n, rest, _ := strings.Cut(series, "{")
		if !ok || n != name {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		s := sample{name: n, labels: map[string]string{}, value: v}
		for _, m := range labelRE.FindAllStringSubmatch(rest, -1) {
			s.labels[m[1]] = m[2]
		}
		out = append(out, s)
	}
	return out
}

// pairs turns ("k", "v", ...) into a map.
func pairs(kv []string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// includes reports whether got has every label of want.
func includes(got, want map[string]string) bool {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}

// Value returns the sample of series name (a histogram's _count or _sum
// included) whose labels are exactly labels ("k", "v", ...), and whether
// the scrape has it.
func (e Exposition) Value(name string, labels ...string) (float64, bool) {
	want := pairs(labels)
	for _, s := range e.samples(name) {
		if len(s.labels) == len(want) && includes(s.labels, want) {
			return s.value, true
		}
	}
	return 0, false
}

// Must is Value for a sample that must be in the scrape.
func (e Exposition) Must(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, ok := e.Value(name, labels...)
	require.Truef(t, ok, "no sample %s%v in the scrape:\n%s", name, labels, e)
	return v
}

// Sum adds the samples of series name whose labels include match ("k",
// "v", ...).
func (e Exposition) Sum(name string, match ...string) float64 {
	want := pairs(match)
	var total float64
	for _, s := range e.samples(name) {
		if includes(s.labels, want) {
			total += s.value
		}
	}
	return total
}
