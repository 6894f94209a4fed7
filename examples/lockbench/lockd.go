package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/quorumlock/quorumlock/internal/httplocker"
	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// Bounds of the lockd backend.
const (
	lockdReady      = 60 * time.Second // the cluster founded and serving sessions
	lockdStop       = 10 * time.Second // SIGTERM to exit, then SIGKILL
	lockdSessionTTL = 10 * time.Second // each worker's client session
	lockdHTTP       = 60 * time.Second // an HTTP request (its wait included)
)

// lockdCluster is three lockd processes founding a cluster on loopback,
// each with its own DataDir under one temporary directory; each worker
// talks HTTP to random replicas through its own client session, as a
// client in another language does (internal/httplocker).
type lockdCluster struct {
	dir      string
	procs    []*exec.Cmd
	replicas []httplocker.Replica
}

// startLockd builds lockd (from the quorumlock source, when bin is
// "") or uses bin, starts three processes and waits until every replica opens client
// sessions.
func startLockd(ctx context.Context, bin string) (*lockdCluster, error) {
	dir, err := os.MkdirTemp("", "lockbench-lockd-")
	if err != nil {
		return nil, err
	}
	c := &lockdCluster{dir: dir}
	if bin == "" {
		if bin, err = buildLockd(ctx, dir); err != nil {
			c.close()
			return nil, err
		}
	}
	ids, addrs, https := []string{"n1", "n2", "n3"}, make([]string, 3), make([]string, 3)
	var peers []string
	for i := range ids {
		if addrs[i], err = freePort(); err == nil {
			https[i], err = freePort()
		}
		if err != nil {
			c.close()
			return nil, err
		}
		peers = append(peers, ids[i]+"="+addrs[i])
	}
	for i, id := range ids {
		cmd := exec.Command(bin, "-id", id, "-addr", addrs[i], "-http", https[i],
			"-data", filepath.Join(dir, id), "-peers", strings.Join(peers, ","), "-log-level", "warn")
		log, err := os.Create(filepath.Join(dir, id+".log"))
		if err == nil {
			cmd.Stderr = log
			err = cmd.Start()
			_ = log.Close() // the process has its own descriptor
		}
		if err != nil {
			c.close()
			return nil, fmt.Errorf("start lockd %s: %w", id, err)
		}
		c.procs = append(c.procs, cmd)
		c.replicas = append(c.replicas, httplocker.Replica{Base: "http://" + https[i], Client: &http.Client{Timeout: lockdHTTP}})
	}
	if err := c.waitReady(ctx); err != nil {
		err = fmt.Errorf("%w%s", err, c.logTails())
		c.close()
		return nil, err
	}
	return c, nil
}

// logTails is the end of each process's log, for an error: close removes
// the logs.
func (c *lockdCluster) logTails() string {
	var b strings.Builder
	for i := range c.procs {
		log, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("n%d.log", i+1)))
		fmt.Fprintf(&b, "\n--- n%d's log (end):\n%s", i+1, log[max(0, len(log)-2000):])
	}
	return b.String()
}

// buildLockd builds examples/lockd of the quorumlock module this program
// was built against (go list finds its directory) into dir.
func buildLockd(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/quorumlock/quorumlock").Output()
	if err != nil {
		return "", fmt.Errorf("find the quorumlock module to build lockd (or pass -lockd): %w", err)
	}
	root := strings.TrimSpace(string(out))
	bin := filepath.Join(dir, "lockd")
	if out, err := exec.CommandContext(ctx, "go", "build", "-C", root, "-o", bin, "./examples/lockd").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build lockd: %w: %s", err, out)
	}
	return bin, nil
}

// freePort is a loopback address that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String(), nil
}

// waitReady polls until every replica opens (and ends) a client session:
// a leader is elected and the cluster speaks the protocol of client
// sessions.
func (c *lockdCluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, lockdReady)
	defer cancel()
	for i, r := range c.replicas {
		for {
			code, rep, err := r.Call(ctx, http.MethodPost, "/v1/sessions?ttl=5s")
			if err == nil && code == http.StatusOK {
				_, _, _ = r.Call(ctx, http.MethodDelete, "/v1/sessions/"+rep.Session)
				break
			}
			if ctx.Err() != nil {
				if err == nil {
					err = fmt.Errorf("HTTP %d %s", code, rep.Error)
				}
				return fmt.Errorf("lockd n%d not serving sessions within %v: %w", i+1, lockdReady, err)
			}
			_ = leasecore.Sleep(ctx, 20*time.Millisecond)
		}
	}
	return nil
}

func (c *lockdCluster) newLocker(context.Context, int) (lock.Locker, error) {
	return httplocker.New(c.replicas, lockdSessionTTL), nil
}

// close stops every process (SIGTERM, then SIGKILL after lockdStop) and
// removes the data.
func (c *lockdCluster) close() {
	for _, cmd := range c.procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, cmd := range c.procs {
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(lockdStop):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	for _, r := range c.replicas {
		r.Client.CloseIdleConnections()
	}
	_ = os.RemoveAll(c.dir)
}
