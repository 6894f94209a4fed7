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
	fs.DurationVar(&c.ttl, "session-ttl", 0, "how long this replica's session outlives its last keep-alive: the time until a crashed or stopped holder's locks pass on (default 10s)")
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
	}
	return c, nil
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

func (c config) node(logger *slog.Logger) node.Config {
	return node.Config{
		ID:         c.id,
		DataDir:    c.data,
		Addr:       c.addr,
		Peers:      c.peers,
		Join:       c.join,
		SessionTTL: c.ttl,
		Logger:     logger,
	}
}
