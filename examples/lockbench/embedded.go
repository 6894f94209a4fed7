package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// embedded is one durable node, or a cluster of durable nodes in this
// process talking over TCP on loopback, each in its own directory under
// one temporary directory.
type embedded struct {
	dir   string
	nodes []*node.Node
}

// startEmbedded starts size durable nodes: one without network, or a
// cluster founded by the first and joined by the others. idle raises the
// name limits so that one Locker can hold that many idle locks.
func startEmbedded(size, idle int) (*embedded, error) {
	dir, err := os.MkdirTemp("", "lockbench-")
	if err != nil {
		return nil, err
	}
	e := &embedded{dir: dir}
	limits := node.Limits{
		Names:           max(node.DefaultLimits.Names, idle+node.DefaultLimits.Names),
		NamesPerSession: max(node.DefaultLimits.NamesPerSession, idle),
	}
	for i := range size {
		cfg := node.Config{ID: fmt.Sprintf("n%d", i+1), DataDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)), Limits: limits}
		if size > 1 {
			cfg.Addr = "127.0.0.1:0"
			if i == 0 {
				cfg.Peers = []node.Peer{{ID: cfg.ID}}
			} else {
				cfg.Join = e.nodes[0].Addr()
			}
		}
		n, err := node.New(cfg)
		if err != nil {
			e.close()
			return nil, fmt.Errorf("start node %s: %w", cfg.ID, err)
		}
		e.nodes = append(e.nodes, n)
	}
	return e, nil
}

// newLocker spreads the workers over the nodes round-robin: in a cluster
// two thirds of them lock through a follower.
func (e *embedded) newLocker(ctx context.Context, i int) (lock.Locker, error) {
	return e.nodes[i%len(e.nodes)].NewLocker(ctx)
}

// close stops every node at once (Abort: the Lockers are closed by then,
// and a graceful Close of the last nodes of a cluster would wait for a
// quorum already gone) and removes the data.
func (e *embedded) close() {
	for _, n := range e.nodes {
		_ = n.Abort()
	}
	_ = os.RemoveAll(e.dir)
}

// leader returns the index of the node that leads, or an error if none is
// known yet.
func (e *embedded) leader() (int, error) {
	for _, n := range e.nodes {
		id, _ := n.Leader()
		for i, m := range e.nodes {
			if id != "" && m.Stats().ID == id {
				return i, nil
			}
		}
	}
	return 0, errNoLeader
}

var errNoLeader = errors.New("no leader known")
