// Command lockd is a lock server: one replica of a quorumlock cluster as a
// process, serving the HTTP lock API of package lockhttp (see its
// DESIGN.md, and the README, for every endpoint). Three of them make a
// cluster that survives the loss of any one:
//
//	lockd -id n1 -addr 127.0.0.1:7001 -http 127.0.0.1:8001 -data /var/lib/lockd/n1 \
//	      -peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003
//
// Start the founders given -peers together (each waits for a leader);
// -join ADDR adds a replica to a running cluster; a replica restarted on
// its -data needs neither (both are then ignored).
//
// Clients open a session (POST /v1/sessions), renew it within its TTL at
// any replica, and acquire with it: the lease ends when the client stops
// renewing. Every grant answers a lease key; refresh and release by key
// work at every replica, across restarts.
//
// Security: -http-tls-cert/-http-tls-key serve HTTPS; -http-tokens FILE
// (re-read on SIGHUP) and -http-client-ca authenticate clients; -tls-cert,
// -tls-key, -tls-ca (or -cluster-key-file) authenticate replicas. Without
// them lockd listens on loopback only, unless -insecure. SIGINT or SIGTERM
// shut down gracefully: in-flight requests end and leadership moves to
// another replica; leases held by key outlive the replica.
package main

import (
	"context"
	"crypto/tls"
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/quorumlock/quorumlock/lockhttp"
	"github.com/quorumlock/quorumlock/metrics/prommetrics"
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
	cfg.warnExposure(log)
	httpTLS, err := cfg.httpTLS()
	if err != nil {
		return err
	}
	var tokens *lockhttp.Tokens
	if cfg.httpTokens != "" {
		if tokens, err = lockhttp.LoadTokens(cfg.httpTokens); err != nil {
			return err
		}
	}
	// SIGHUP re-reads the tokens; without them it does nothing. It must
	// never kill the replica (its default action): handled until run
	// returns, the shutdown included.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	done := make(chan struct{})
	defer close(done)
	go reloadOnHUP(hup, done, tokens, log)
	ncfg, err := cfg.node(log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	if ncfg.Metrics, err = prommetrics.New(reg, nil); err != nil {
		return err
	}

	// Listen first, so that a port in use fails at once, and answer 503
	// until the node has a leader and has caught up.
	ln, err := net.Listen("tcp", cfg.http)
	if err != nil {
		return err
	}
	if httpTLS != nil {
		ln = tls.NewListener(ln, httpTLS)
	}
	var ready atomic.Pointer[lockhttp.Handler]
	base, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h := ready.Load(); h != nil {
				h.ServeHTTP(w, r)
				return
			}
			starting(w, r)
		}),
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("http listening", "addr", ln.Addr().String(), "https", httpTLS != nil)

	n, err := startNode(ctx, ncfg)
	if err != nil {
		cancelRequests()
		_ = srv.Close()
		return errors.Join(err, ignoreClosed(<-served))
	}
	h, err := lockhttp.New(lockhttp.Config{
		Locker: n, Authenticate: cfg.authenticator(tokens), Logger: log,
		Ready:   func() error { return nodeReady(n) },
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	})
	if err != nil {
		_ = n.Close()
		return err
	}
	ready.Store(h)
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
	err = errors.Join(err, ignoreClosed(srv.Shutdown(sctx)), h.Close(), n.Close())
	log.Info("stopped", "error", err)
	return err
}

// starting answers while the node has not started: health is fine, the
// rest is 503.
func starting(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == "/healthz" {
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, `{"error":"starting","detail":"the node has not joined a cluster with a leader yet"}`+"\n")
}

// nodeReady is /readyz: a member of a cluster with a known leader.
func nodeReady(n *node.Node) error {
	st := n.Stats()
	switch {
	case st.State == "shutdown":
		return errors.New("the node has stopped")
	case st.LeaderID == "":
		return errors.New("no leader known")
	}
	return nil
}

// reloadOnHUP re-reads the tokens file (if any) on every SIGHUP until
// done closes.
func reloadOnHUP(hup <-chan os.Signal, done <-chan struct{}, tokens *lockhttp.Tokens, log *slog.Logger) {
	for {
		select {
		case <-done:
			return
		case <-hup:
			if tokens == nil {
				log.Info("SIGHUP: no -http-tokens to reload")
				continue
			}
			if err := tokens.Reload(); err != nil {
				log.Warn("tokens not reloaded; the old ones stay", "error", err)
				continue
			}
			log.Info("tokens reloaded")
		}
	}
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
