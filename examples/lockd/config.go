package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/quorumlock/quorumlock/node"
)

// config is lockd's command line.
type config struct {
	id       string
	addr     string // cluster listener; empty: a single node without network
	http     string // HTTP API listener
	data     string // DataDir; empty: in memory
	peers    []node.Peer
	join     string
	logLevel slog.Level
	ttl      time.Duration // SessionTTL; 0: the node's default

	// The HTTP API's security (security.go).
	httpCert, httpKey string // serve HTTPS
	httpClientCA      string // require client certificates from this CA (role client)
	httpTokens        string // bearer tokens file
	// The cluster port's.
	tlsCert, tlsKey, tlsCA string // mutual TLS between replicas
	clusterKeyFile         string // a shared key file (peer identity without a PKI)
	insecure               bool   // listen beyond loopback without protection
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("lockd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var peers string
	fs.StringVar(&c.id, "id", "", "this replica's node ID, unique in the cluster (required)")
	fs.StringVar(&c.addr, "addr", "", "cluster listener host:port (Raft and node RPC); empty: a single node without network")
	fs.StringVar(&c.http, "http", "", "HTTP API listener host:port (required)")
	fs.StringVar(&c.data, "data", "", "data directory (Raft log and snapshots); empty: in memory")
	fs.StringVar(&peers, "peers", "", "found a cluster of these voters: id=host:port,... (the same list on every founder)")
	fs.StringVar(&c.join, "join", "", "cluster address of any member of a running cluster to join")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.DurationVar(&c.ttl, "session-ttl", 0, "how long this replica's own session outlives its last keep-alive (default 10s)")
	fs.StringVar(&c.httpCert, "http-tls-cert", "", "serve the HTTP API over HTTPS with this certificate (PEM; with -http-tls-key)")
	fs.StringVar(&c.httpKey, "http-tls-key", "", "the HTTPS certificate's private key (PEM)")
	fs.StringVar(&c.httpClientCA, "http-client-ca", "", "require HTTPS clients to present a certificate from these CAs (PEM); such a client has the client role")
	fs.StringVar(&c.httpTokens, "http-tokens", "", "bearer tokens file: one 'TOKEN ROLE' per line, ROLE client or admin; re-read on SIGHUP")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "mutual TLS between replicas: this replica's certificate (PEM), naming quorumlock://member/<id>")
	fs.StringVar(&c.tlsKey, "tls-key", "", "the cluster certificate's private key (PEM)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "the CAs (PEM) that replicas' certificates must chain to")
	fs.StringVar(&c.clusterKeyFile, "cluster-key-file", "", "a file holding the cluster key, the same on every replica: peers prove it (without -tls-*, connections are not encrypted)")
	fs.BoolVar(&c.insecure, "insecure", false, "allow listening beyond loopback without authentication (HTTP) or peer identity (cluster)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var err error
	if c.peers, err = parsePeers(peers); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.id == "":
		return c, errors.New("-id is required")
	case c.http == "":
		return c, errors.New("-http is required")
	case c.addr == "" && (c.peers != nil || c.join != ""):
		return c, errors.New("-peers and -join need -addr")
	case c.peers != nil && c.join != "":
		return c, errors.New("-peers and -join are exclusive")
	case (c.httpCert == "") != (c.httpKey == ""):
		return c, errors.New("-http-tls-cert and -http-tls-key go together")
	case c.httpClientCA != "" && c.httpCert == "":
		return c, errors.New("-http-client-ca needs HTTPS (-http-tls-cert, -http-tls-key)")
	case (c.tlsCert == "") != (c.tlsKey == "") || (c.tlsCert == "") != (c.tlsCA == ""):
		return c, errors.New("-tls-cert, -tls-key and -tls-ca go together")
	case c.addr == "" && (c.tlsCert != "" || c.clusterKeyFile != ""):
		return c, errors.New("-tls-* and -cluster-key-file need -addr")
	}
	return c, c.checkExposure()
}

// checkExposure refuses to listen beyond loopback without protection,
// unless -insecure: the HTTP API needs bearer tokens or client
// certificates, the cluster port TLS or a cluster key.
func (c config) checkExposure() error {
	if c.insecure {
		return nil
	}
	if !c.httpAuth() && !loopback(c.http) {
		return fmt.Errorf("-http %s is beyond loopback and the API has no authentication: give -http-tokens or -http-client-ca, or -insecure", c.http)
	}
	if c.addr != "" && !c.clusterAuth() && !loopback(c.addr) {
		return fmt.Errorf("-addr %s is beyond loopback and replicas are not authenticated: give -tls-cert/-tls-key/-tls-ca or -cluster-key-file, or -insecure", c.addr)
	}
	return nil
}

func (c config) httpAuth() bool    { return c.httpTokens != "" || c.httpClientCA != "" }
func (c config) clusterAuth() bool { return c.tlsCert != "" || c.clusterKeyFile != "" }

// loopback reports whether host:port names a loopback address only.
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parsePeers parses "n1=127.0.0.1:7001,n2=127.0.0.1:7002".
func parsePeers(s string) ([]node.Peer, error) {
	if s == "" {
		return nil, nil
	}
	var peers []node.Peer
	for item := range strings.SplitSeq(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || id == "" {
			return nil, fmt.Errorf("-peers: %q is not id=host:port", item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("-peers: %q: %w", item, err)
		}
		peers = append(peers, node.Peer{ID: id, Addr: addr})
	}
	return peers, nil
}

// node is the node's Config.
func (c config) node(logger *slog.Logger) (node.Config, error) {
	cfg := node.Config{
		ID: c.id, DataDir: c.data, Addr: c.addr, Peers: c.peers, Join: c.join,
		SessionTTL: c.ttl, Logger: logger,
		// lockd's clients hold many keyed leases through one replica, all
		// claims of its own session (node/DESIGN.md, "Limits").
		Limits: node.Limits{NamesPerSession: 100_000},
	}
	return cfg, c.clusterSecurity(&cfg)
}
