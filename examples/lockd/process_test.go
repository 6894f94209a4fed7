package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/httplocker"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// buildLockd builds this command into a temporary directory.
func buildLockd(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	bin := filepath.Join(t.TempDir(), "lockd")
	out, err := exec.CommandContext(t.Context(), goTool, "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// syncBuffer collects a process's stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is one lockd process.
type proc struct {
	id, addr, http, data string
	peers                string
	extra                []string // more flags
	// How the test reaches its API: HTTPS with this client config if set,
	// and a bearer token.
	tlsClient *tls.Config
	token     string

	api
	cmd     *exec.Cmd
	log     *syncBuffer
	exited  chan struct{} // closed when the process has exited
	err     error         // its exit status, once exited
	stopped bool          // the test stopped it (kill or terminate)
}

func (p *proc) args() []string {
	return append([]string{"-id", p.id, "-addr", p.addr, "-http", p.http, "-data", p.data, "-peers", p.peers, "-log-level", "debug"}, p.extra...)
}

// start starts the process; it does not wait for it to be ready.
func (p *proc) start(t *testing.T, bin string) {
	t.Helper()
	p.log = &syncBuffer{}
	p.cmd = exec.Command(bin, p.args()...)
	p.cmd.Stderr = p.log
	p.cmd.WaitDelay = 5 * time.Second // never hang on the stderr pipe
	require.NoError(t, p.cmd.Start())
	p.stopped = false
	cmd, exited := p.cmd, make(chan struct{})
	p.exited = exited
	go func() {
		p.err = cmd.Wait()
		close(exited)
	}()
	p.api = api{httplocker.Replica{Base: "http://" + p.http, Client: &http.Client{Timeout: 15 * time.Second}, Token: p.token}}
	if p.tlsClient != nil {
		p.Base = "https://" + p.http
		p.Client.Transport = &http.Transport{TLSClientConfig: p.tlsClient}
	}
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return p.cmd != nil
	}
}

// kill stops the process the hard way (SIGKILL) and waits until it is gone.
func (p *proc) kill() {
	if p.cmd == nil {
		return
	}
	p.stopped = true
	if p.running() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.Client.CloseIdleConnections()
}

// terminate sends SIGTERM and returns the exit status.
func (p *proc) terminate(timeout time.Duration) error {
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		p.Client.CloseIdleConnections()
		return p.err
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM", p.id, timeout)
	}
}

func (p *proc) status(ctx context.Context) (reply, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	code, r, err := p.call(ctx, http.MethodGet, "/v1/status")
	return r, err == nil && code == http.StatusOK
}

// procCluster is lockd processes on loopback ports.
type procCluster struct {
	t     *testing.T
	bin   string
	procs []*proc
}

// startProcCluster starts size lockd processes founding a cluster with
// -peers on free loopback ports and waits until all of them agree on a
// leader. A port taken between picking and binding makes a process exit:
// then it starts over on new ports.
func startProcCluster(t *testing.T, bin string, size int, extra ...string) *procCluster {
	t.Helper()
	return startProcClusterWith(t, bin, size, func(p *proc) { p.extra = extra })
}

// startProcClusterWith is startProcCluster with each process's flags and
// API client set by edit.
func startProcClusterWith(t *testing.T, bin string, size int, edit func(p *proc)) *procCluster {
	t.Helper()
	c := &procCluster{t: t, bin: bin}
	dir := t.TempDir() // created first, so removed after the processes stopped
	t.Cleanup(func() {
		for _, p := range c.procs {
			p.kill()
			if t.Failed() {
				c.dumpLog(p)
			}
		}
	})
	for attempt := 1; ; attempt++ {
		c.procs = nil
		var peers []string
		for i := range size {
			p := &proc{id: fmt.Sprintf("n%d", i+1), addr: freePort(t), http: freePort(t)}
			edit(p)
			p.data = filepath.Join(dir, fmt.Sprintf("attempt%d-%s", attempt, p.id))
			peers = append(peers, p.id+"="+p.addr)
			c.procs = append(c.procs, p)
		}
		for _, p := range c.procs {
			p.peers = strings.Join(peers, ",")
			p.start(t, bin)
		}
		err := c.waitLeader("", 30*time.Second)
		if err == nil {
			return c
		}
		for _, p := range c.procs {
			p.kill()
		}
		if attempt == 3 || !c.bindFailed() {
			for _, p := range c.procs {
				c.dumpLog(p)
			}
			t.Fatalf("cluster did not form: %v", err)
		}
		t.Logf("attempt %d: a port was taken, retrying: %v", attempt, err)
	}
}

// dumpLog logs the end of p's stderr, without the debug lines.
func (c *procCluster) dumpLog(p *proc) {
	if p.log == nil {
		return
	}
	var lines []string
	for l := range strings.SplitSeq(p.log.String(), "\n") {
		if !strings.Contains(l, "level=DEBUG") {
			lines = append(lines, l)
		}
	}
	c.t.Logf("--- %s stderr (last %d lines of %d, no debug) ---\n%s", p.id, min(200, len(lines)), len(lines), strings.Join(lines[max(0, len(lines)-200):], "\n"))
}

func (c *procCluster) bindFailed() bool {
	for _, p := range c.procs {
		if strings.Contains(p.log.String(), "address already in use") {
			return true
		}
	}
	return false
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// waitLeader waits until every running process reports the same leader,
// other than notID, and all members. It returns early if a process exits.
func (c *procCluster) waitLeader(notID string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(c.t.Context(), timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		leader, agreed := "", true
		for _, p := range c.procs {
			if !p.running() {
				if !p.stopped {
					return fmt.Errorf("%s exited: %w", p.id, cmp.Or(p.err, errors.New("status 0")))
				}
				continue
			}
			st, ok := p.status(ctx)
			if !ok || st.Leader == "" || st.Leader == notID || len(st.Members) != len(c.procs) || (leader != "" && st.Leader != leader) {
				agreed = false
				break
			}
			leader = st.Leader
		}
		if agreed && leader != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no agreed leader: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// leader returns the process every running process names as leader.
func (c *procCluster) leader() *proc {
	c.t.Helper()
	for _, p := range c.procs {
		if st, ok := p.status(c.t.Context()); ok && p.running() && st.State == "leader" {
			return p
		}
	}
	c.t.Fatal("no leader process")
	return nil
}

// others returns the running processes other than p.
func (c *procCluster) others(p *proc) []*proc {
	var out []*proc
	for _, q := range c.procs {
		if q != p && q.running() {
			out = append(out, q)
		}
	}
	return out
}

// waitCaughtUp waits until p has applied at least index.
func waitCaughtUp(t *testing.T, p *proc, index uint64, timeout time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		if !p.running() {
			return true // reported below
		}
		st, ok := p.status(t.Context())
		return ok && st.Leader != "" && st.AppliedIndex >= index
	}, timeout, 10*time.Millisecond, "%s did not catch up to %d", p.id, index)
	if !p.running() {
		t.Fatalf("%s exited: %v", p.id, p.err)
	}
}

// TestLockd_Processes runs three lockd processes: a client session and its
// lease through a follower, SIGKILL of the leader, failover, the client's
// lease refreshed at another replica, restart of the killed process on its
// -data serving the leases granted before it died, and a graceful SIGTERM
// that leaves the client's lease to the client.
func TestLockd_Processes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes (-short)")
	}
	t.Parallel()
	bin := buildLockd(t)
	c := startProcCluster(t, bin, 3)
	leader := c.leader()
	survivors := c.others(leader)
	follower, other := survivors[0], survivors[1]

	// A client session and a session lease of it, through the follower.
	session := follower.must(t, "POST", "/v1/sessions?ttl=1h&owner=web-1", 200).Session
	held := follower.must(t, "POST", "/v1/locks/orders%2F42?owner=follower&session="+session, 200)
	assert.Equal(t, "orders/42", held.Name)
	require.NotEmpty(t, held.Lease)
	// A keyed TTL lease through the leader, which is killed next.
	ttl := leader.must(t, "POST", "/v1/locks/ticket-7?ttl=1h", 200)

	// Kill the leader abruptly; a survivor elects a new leader and grants
	// a free lock.
	killed := time.Now()
	leader.kill()
	require.NoError(t, c.waitLeader(leader.id, 15*time.Second), "no new leader")
	after := other.must(t, "POST", "/v1/locks/after-failover?ttl=1m&wait=10s", 200)
	t.Logf("leader kill to acquire on a survivor: %v", time.Since(killed))
	assert.Greater(t, after.Token, held.Token)

	// The client's lease survived the failover; the client renews its
	// session and refreshes its lease at another replica.
	other.must(t, "PUT", "/v1/sessions/"+session, 200)
	info := other.must(t, "GET", "/v1/locks/orders%2F42", 200)
	assert.True(t, info.Held)
	assert.Equal(t, held.Token, info.Token)
	assert.Equal(t, "follower", info.Owner)
	assert.Equal(t, "session", info.Kind)
	other.must(t, "POST", "/v1/locks/orders%2F42/refresh?lease="+held.Lease, 200)

	// The killed process restarts on its -data (same flags: -peers is
	// ignored on existing state), catches up, and serves refresh and
	// release of the lease it granted before it died.
	leader.start(t, bin)
	waitCaughtUp(t, leader, after.Token, 20*time.Second)
	r := leader.must(t, "POST", "/v1/locks/ticket-7/refresh?lease="+ttl.Lease, 200)
	assert.Equal(t, ttl.Token, r.Token)
	leader.must(t, "DELETE", "/v1/locks/ticket-7?lease="+ttl.Lease, 200)
	st := leader.must(t, "GET", "/v1/status", 200)
	assert.Len(t, st.Members, 3)
	assert.NotEqual(t, leader.id, st.Leader)

	// Graceful stop of the replica the client used: its lease is the
	// client's, held by key, and outlives the replica.
	require.NoError(t, follower.terminate(15*time.Second))
	assert.Contains(t, follower.log.String(), "msg=stopped")
	info = other.must(t, "GET", "/v1/locks/orders%2F42", 200)
	assert.True(t, info.Held, "SIGTERM of a replica leaves its clients' leases")
	other.must(t, "DELETE", "/v1/locks/orders%2F42?lease="+held.Lease, 200)
	leader.must(t, "DELETE", "/v1/sessions/"+session, 200)
	leader.must(t, "PUT", "/v1/sessions/"+session, 404)
}

// TestLockd_PythonTicketSale runs the README's non-Go client,
// ticketsale.py (Python's standard library only), against three lockd
// processes: 20 buyers, 5 tickets, none oversold, every buyer answered.
func TestLockd_PythonTicketSale(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes (-short)")
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 in PATH")
	}
	t.Parallel()
	bin := buildLockd(t)
	c := startProcCluster(t, bin, 3)
	var replicas []string
	for _, p := range c.procs {
		replicas = append(replicas, "http://"+p.http)
	}
	out, err := exec.CommandContext(t.Context(), python, "ticketsale.py", "--replicas", strings.Join(replicas, ","),
		"--buyers", "20", "--tickets", "5").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "SUMMARY tickets=5 sold=5 buyers=20 oversold=0 failed=0")
}
