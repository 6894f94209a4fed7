// Command lockd is one application replica as a process: it embeds a
// quorumlock node and serves an HTTP lock API. Three of them make a
// cluster that survives the loss of any one:
//
//	lockd -id n1 -addr 127.0.0.1:7001 -http 127.0.0.1:8001 -data /tmp/lockd/n1 \
//	      -peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003
//
// Start the founders given -peers together (each waits for a leader);
// -join ADDR adds a replica to a running cluster; a replica restarted on
// its -data needs neither (both are then ignored). API:
//
//	POST   /v1/locks/{name}?wait=DUR&ttl=DUR&owner=STR  acquire (wait absent or 0: one try)
//	POST   /v1/locks/{name}/refresh?token=N           refresh a lease granted by this replica
//	DELETE /v1/locks/{name}?token=N                   release a lease granted by this replica
//	GET    /v1/locks/{name}                           holder, token, owner, waiters, TTL left
//	GET    /v1/status                                 Raft state, leader, indexes, members
//
// A name containing '/' is sent escaped as %2F. Without ttl the lease is a
// session lease of this replica: it lasts until released or until this
// process dies (then one session TTL, 10 s). SIGINT or SIGTERM shut down
// gracefully: in-flight requests end, this replica's leases are released
// and leadership moves to another replica.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quorumlock/quorumlock/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second signal kills at once
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "lockd:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))

	// Listen first, so that a port in use fails at once, and answer 503
	// until the node has a leader and has caught up.
	ln, err := net.Listen("tcp", cfg.http)
	if err != nil {
		return err
	}
	var ready atomic.Pointer[http.Handler]
	base, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h := ready.Load(); h != nil {
				(*h).ServeHTTP(w, r)
				return
			}
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "starting", Detail: "the node has not joined a cluster with a leader yet"})
		}),
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("http listening", "addr", ln.Addr().String())

	n, err := startNode(ctx, cfg.node(log))
	if err != nil {
		cancelRequests()
		_ = srv.Close()
		return errors.Join(err, ignoreClosed(<-served))
	}
	h := newServer(n, n, log).handler()
	ready.Store(&h)
	st := n.Stats()
	log.Info("ready", "id", st.ID, "cluster_addr", st.Addr, "state", st.State, "leader", st.LeaderID)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-served:
		log.Error("http server failed", "error", err)
	}
	cancelRequests() // waiting acquires give up now
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = errors.Join(err, ignoreClosed(srv.Shutdown(sctx)), n.Close())
	log.Info("stopped", "error", err)
	return err
}

// startNode starts the node, which may wait up to its StartTimeout for the
// other founders. A signal meanwhile abandons it: the process is exiting.
func startNode(ctx context.Context, cfg node.Config) (*node.Node, error) {
	type result struct {
		n   *node.Node
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := node.New(cfg)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		return r.n, r.err
	case <-ctx.Done():
		return nil, errors.New("interrupted while waiting for the cluster")
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
