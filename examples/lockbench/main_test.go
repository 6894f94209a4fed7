package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/quorumlock/quorumlock/internal/testserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// short is the cell timing of every test run: the verdicts depend on
// counts, never on speed.
var short = []string{"-duration", "300ms", "-warmup", "0s"}

// runBench runs the program with args plus -json and -svg files, and
// returns its stdout and the results read back from the JSON file; the SVG
// must be well-formed XML with an svg root.
func runBench(t *testing.T, args ...string) (string, results) {
	t.Helper()
	dir := t.TempDir()
	jsonPath, svgPath := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.svg")
	var stdout, stderr bytes.Buffer
	args = append(append(args, short...), "-json", jsonPath, "-svg", svgPath)
	require.NoError(t, run(context.Background(), args, &stdout, &stderr), "stderr: %s", stderr.String())

	b, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	var res results
	require.NoError(t, json.Unmarshal(b, &res))

	f, err := os.Open(svgPath)
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	assertWellFormedSVG(t, f)
	assert.NotEmpty(t, stderr.String(), "a progress line was drawn")
	return stdout.String(), res
}

func assertWellFormedSVG(t *testing.T, r io.Reader) {
	t.Helper()
	dec := xml.NewDecoder(r)
	var root string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	assert.Equal(t, "svg", root)
}

// assertCells checks that res has exactly one cell per backend and
// workload (besides failover probes), each with ops, no error and no
// violation, and that the table printed a row for each.
func assertCells(t *testing.T, table string, res results, backends, workloads []string) {
	t.Helper()
	got := map[string]cell{}
	for _, c := range res.Cells {
		if c.Workload != "failover" {
			got[c.Backend+" "+c.Workload] = c
		}
	}
	assert.Len(t, got, len(backends)*len(workloads))
	for _, b := range backends {
		for _, w := range workloads {
			c, ok := got[b+" "+w]
			if !assert.True(t, ok, "cell %s %s", b, w) {
				continue
			}
			assert.Positive(t, c.Ops, "%s %s", b, w)
			assert.Zero(t, c.Errors, "%s %s: %s", b, w, c.FirstError)
			assert.Zero(t, c.Violations, "%s %s", b, w)
			assert.Regexp(t, `(?m)^\s*`+b+`\s+`+strings.ReplaceAll(w, "+", `\+`)+`\s+\d+\s+`+`\d+`, table)
			if w != "failover" {
				assert.Positive(t, c.OpsPerSec, "%s %s", b, w)
				assert.LessOrEqual(t, c.Latency.P50, c.Latency.P99, "%s %s", b, w)
				assert.LessOrEqual(t, c.Wait.P50, c.Latency.P50, "%s %s: the wait is part of the op", b, w)
			}
		}
	}
}

func TestRun_Embedded(t *testing.T) {
	profile := filepath.Join(t.TempDir(), "cpu.pprof")
	table, res := runBench(t, "-backends", "embedded1,embedded3", "-idle", "40", "-failovers", "1", "-cpuprofile", profile)
	b, err := os.ReadFile(profile)
	require.NoError(t, err)
	require.Greater(t, len(b), 2)
	assert.Equal(t, []byte{0x1f, 0x8b}, b[:2], "a pprof profile is gzipped")
	assertCells(t, table, res, []string{"embedded1", "embedded3"}, []string{"W1", "W2", "W3", "W2+idle40"})
	// The failover probe runs on the cluster only, once.
	var failovers []cell
	for _, c := range res.Cells {
		if c.Workload == "failover" {
			failovers = append(failovers, c)
		}
	}
	require.Len(t, failovers, 1)
	assert.Equal(t, "embedded3", failovers[0].Backend)
	assert.Equal(t, 1, failovers[0].Ops, failovers[0].FirstError)
	assert.Positive(t, failovers[0].Latency.Max)
	for _, c := range res.Cells {
		if c.Workload == "W2+idle40" {
			assert.Equal(t, 40, c.Idle)
		}
	}
}

// TestRun_Adapters runs the same workloads over the adapters against real
// servers: a redis-server with appendfsync always and a one-member
// ZooKeeper ensemble, given to zookeeper3 as well (the same adapter on
// -zk3's list: a second ensemble would only add JVMs to the test).
func TestRun_Adapters(t *testing.T) {
	redisSrv := testserver.StartRedis(t, testserver.RedisOptions{AppendFsyncAlways: true})
	zkSrv := testserver.StartEnsemble(t, 1, testserver.ZKOptions{})
	servers := strings.Join(zkSrv.Servers(), ",")
	table, res := runBench(t, "-backends", "redis,zookeeper,zookeeper3", "-redis", redisSrv.Addr(), "-zk", servers, "-zk3", servers)
	assertCells(t, table, res, []string{"redis", "zookeeper", "zookeeper3"}, []string{"W1", "W2", "W3"})
}

// TestRun_Lockd runs the workloads on three lockd processes the program
// builds and starts, through HTTP client sessions.
func TestRun_Lockd(t *testing.T) {
	table, res := runBench(t, "-backends", "lockd3")
	assertCells(t, table, res, []string{"lockd3"}, []string{"W1", "W2", "W3"})
}

// TestRun_Etcd runs the workloads over etcd's concurrency package against
// a real etcd server (built from this module's etcd), given to etcd3 as
// well (as for zookeeper3).
func TestRun_Etcd(t *testing.T) {
	endpoint := startEtcd(t)
	table, res := runBench(t, "-backends", "etcd,etcd3", "-etcd", endpoint, "-etcd3", endpoint)
	assertCells(t, table, res, []string{"etcd", "etcd3"}, []string{"W1", "W2", "W3"})
}

// startEtcd builds ./etcdserver, starts one member on free loopback ports
// and returns its client address once it reports healthy.
func startEtcd(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "etcd")
	out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./etcdserver").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	client, peer := mustFreePort(t), mustFreePort(t)
	var log bytes.Buffer
	cmd := exec.Command(bin, "--name", "e1", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "e1=http://"+peer, "--log-level", "error")
	cmd.Stderr = &log
	cmd.WaitDelay = 5 * time.Second
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("etcd's log:\n%s", log.String())
		}
	})
	require.Eventually(t, func() bool {
		res, err := http.Get("http://" + client + "/health")
		if err != nil {
			return false
		}
		_ = res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, time.Minute, 20*time.Millisecond, "etcd healthy")
	return client
}

func mustFreePort(t *testing.T) string {
	t.Helper()
	addr, err := freePort()
	require.NoError(t, err)
	return addr
}

func TestRun_RejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-backends", ""}, {"-backends", "consul"}, {"-backends", "embedded1,embedded1"},
		{"-workloads", "W4"}, {"-workloads", "", "-failovers", "0"},
		{"-duration", "0s"}, {"-warmup", "-1s"}, {"-failovers", "-1"},
		{"-idle", "-1"}, {"-idle", "1000001"}, {"extra"},
	} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		assert.ErrorIs(t, err, errUsage, "%q", args)
	}
	// flag's own errors: not a number, not a flag.
	assert.Error(t, run(context.Background(), []string{"-idle", "many"}, io.Discard, io.Discard))
	assert.Error(t, run(context.Background(), []string{"-nodes", "3"}, io.Discard, io.Discard))
}

func TestRun_UnreachableServer(t *testing.T) {
	// A port nothing listens on: the program says so before any cell.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, append([]string{"-backends", "redis", "-redis", "127.0.0.1:1"}, short...), io.Discard, io.Discard)
	assert.ErrorContains(t, err, "redis at 127.0.0.1:1")
}

func TestExclusive(t *testing.T) {
	var guard atomic.Int32
	assert.True(t, exclusive(&guard), "alone")
	assert.Equal(t, int32(0), guard.Load(), "left")
	guard.Store(1) // another holder inside
	assert.False(t, exclusive(&guard), "a second holder is a violation")
	assert.Equal(t, int32(1), guard.Load(), "left, the other still inside")
}

func TestSummarize(t *testing.T) {
	samples := make([]time.Duration, 1000)
	for i := range samples {
		samples[len(samples)-1-i] = time.Duration(i+1) * time.Millisecond
	}
	d := summarize(samples)
	assert.Equal(t, dist{P50: 500, P99: 990, P999: 999, Max: 1000}, d)
	assert.Equal(t, dist{}, summarize(nil))
	assert.Equal(t, dist{P50: 7, P99: 7, P999: 7, Max: 7}, summarize([]time.Duration{7 * time.Millisecond}))
}

func TestRenderSVG_NoCells(t *testing.T) {
	assertWellFormedSVG(t, strings.NewReader(renderSVG(nil)))
}

// Every backend has a color of its own in the chart.
func TestPalette_OneColorPerBackend(t *testing.T) {
	assert.GreaterOrEqual(t, len(palette), len(backendNames))
	assert.False(t, hasDup(palette))
}
