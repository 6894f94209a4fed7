package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/node"
)

// cluster is the replicas' embedded Raft cluster: one durable node per
// replica, in a temporary directory, talking over TCP on loopback. Every
// node is a founding voter; a killed node (Abort, as a crashed process)
// restarts on its DataDir and its address, as a restarted process would.
type cluster struct {
	dir   string
	cfgs  []node.Config // what a restart starts: ID, DataDir, SessionTTL, Peers
	addrs []string      // listen addresses, stable across restarts

	mu    sync.Mutex
	nodes []*node.Node // nil while dead
}

// startCluster starts size founding nodes with session TTL ttl, all at
// once (each waits for a quorum), then waits until they run protocol 5,
// the first that knows elections. On error it stops what started.
func startCluster(ctx context.Context, size int, ttl time.Duration) (_ *cluster, err error) {
	dir, err := os.MkdirTemp("", "quorumlock-election-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, nodes: make([]*node.Node, size)}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	lns := make([]net.Listener, size)
	defer func() { // close the listeners no node owns
		for i, ln := range lns {
			if ln != nil && c.node(i) == nil {
				_ = ln.Close()
			}
		}
	}()
	var peers []node.Peer
	for i := range size {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		c.addrs = append(c.addrs, lns[i].Addr().String())
		peers = append(peers, node.Peer{ID: nodeID(i), Addr: c.addrs[i]})
	}
	for i := range size {
		c.cfgs = append(c.cfgs, node.Config{
			ID: nodeID(i), DataDir: filepath.Join(dir, nodeID(i)), SessionTTL: ttl, Peers: peers,
		})
	}
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range size {
		wg.Go(func() { errs[i] = c.start(i, lns[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, c.waitProtocol(ctx, 5)
}

func nodeID(i int) string { return fmt.Sprintf("n%d", i+1) }

// start starts node i on ln, which it owns from then on.
func (c *cluster) start(i int, ln net.Listener) error {
	cfg := c.cfgs[i]
	cfg.Listener = ln
	n, err := node.New(cfg)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("start %s: %w", cfg.ID, err)
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
	return nil
}

// waitProtocol polls until every live node has committed protocol level
// at least level (a new cluster raises it on its own within a second or
// so), or ctx ends.
func (c *cluster) waitProtocol(ctx context.Context, level int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok := true
		for i := range c.nodes {
			if n := c.node(i); n != nil && n.Stats().Protocol < level {
				ok = false
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for protocol %d: %w", level, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// node returns node i, nil while it is dead.
func (c *cluster) node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// raftLeader is the index of the live node that is the Raft leader, or -1.
func (c *cluster) raftLeader() int {
	for i := range c.nodes {
		if n := c.node(i); n != nil && n.Stats().State == "leader" {
			return i
		}
	}
	return -1
}

// raftTerm is the highest Raft term a live node is in.
func (c *cluster) raftTerm() uint64 {
	var term uint64
	for i := range c.nodes {
		if n := c.node(i); n != nil {
			term = max(term, n.Stats().Term)
		}
	}
	return term
}

// kill stops node i the way a crashed process stops (Abort): nothing is
// released or handed over; its sessions expire after their TTL.
func (c *cluster) kill(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		_ = n.Abort()
	}
}

// restart starts dead node i again on its DataDir and address. The port
// may linger briefly after the node closed it, hence the few tries.
func (c *cluster) restart(ctx context.Context, i int) error {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", c.addrs[i]); err == nil {
			return c.start(i, ln)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("listen again on %s: %w", c.addrs[i], err)
}

// close stops the live nodes as seckill's closeNodes does — every node
// but the Raft leader leaves the cluster, one at a time, and the leader,
// alone by then, closes last — and removes the DataDirs. A graceful Close
// commits the end of the node's sessions, which needs a quorum that
// closing them all at once would take away.
func (c *cluster) close() {
	c.mu.Lock()
	var live []*node.Node
	for _, n := range c.nodes {
		if n != nil {
			live = append(live, n)
		}
	}
	c.mu.Unlock()
	last := 0
	if len(live) > 0 {
		leaderID, _ := live[0].Leader()
		for i, n := range live {
			if n.Stats().ID == leaderID {
				last = i
			}
		}
	}
	for i, n := range live {
		if i != last {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = n.Leave(ctx)
			cancel()
		}
	}
	if len(live) > 0 {
		_ = live[last].Close()
	}
	_ = os.RemoveAll(c.dir)
}
