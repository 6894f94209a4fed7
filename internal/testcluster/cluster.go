package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// SessionTTL is every node's Config.SessionTTL unless Options.Edit changes
// it.
const SessionTTL = 2 * time.Second

// Options describe a cluster to Start.
type Options struct {
	// Size is the number of nodes Start starts.
	Size int
	// Durable gives every node a DataDir (a directory of its own under one
	// t.TempDir), so that a restarted node finds its state. Otherwise
	// nodes keep Raft's state in memory.
	Durable bool
	// Peers founds the cluster with every node a founding voter
	// (Config.Peers), all started concurrently: each New waits for a
	// quorum. Otherwise n1 founds the cluster alone and the others join it
	// (Config.Join) one after the other.
	Peers bool
	// Edit, if set, edits node i's Config before it starts, Add's nodes
	// included. ID, SessionTTL and DataDir are set before it; Listener,
	// Dial, Peers and Join after it.
	Edit func(i int, cfg *node.Config)
	// Net, if set, sits between the nodes (a fault layer).
	Net Network
}

// Network is the seam for a fault layer between the nodes: it wraps their
// listeners and dials, and learns of crashes and restarts.
type Network interface {
	// Listener wraps node i's listener ln. Node i listens on ln.Addr(),
	// also after a restart (with a new ln on the same address).
	Listener(i int, ln net.Listener) net.Listener
	// Dialer returns node i's Config.Dial.
	Dialer(i int) func(ctx context.Context, addr string) (net.Conn, error)
	// Isolate cuts node i off from every other node. Kill calls it before
	// it aborts the node, so that the peers see a crash at once.
	Isolate(i int)
	// Reconnect heals every cut link of node i. Restart calls it before it
	// starts the node again.
	Reconnect(i int)
}

// Cluster is a set of nodes over loopback TCP; see the package doc.
type Cluster struct {
	t    *testing.T
	opts Options
	root string // parent of the DataDirs; "" unless Durable

	mu      sync.Mutex
	nodes   []*node.Node    // nil while dead
	cfgs    []node.Config   // what a restart starts: no Listener or Join; founders keep Peers
	addrs   []string        // listen addresses, stable across restarts
	stopped []chan struct{} // closed once node i's last stop returned
	lockers []int           // Lockers made by NewLocker since node i started
}

// Start starts opts.Size nodes, waits until every node sees them all and a
// leader, and registers a cleanup that aborts every node.
func Start(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: opts}
	if opts.Durable {
		// Before the cleanup below, so that the directories are removed
		// after the nodes stopped.
		c.root = t.TempDir()
	}
	t.Cleanup(c.closeAll)
	cfgs := make([]node.Config, opts.Size)
	lns := make([]net.Listener, opts.Size)
	defer func() { // after a failed start, close the listeners no node owns
		for i, ln := range lns {
			if ln != nil && c.Node(i) == nil {
				_ = ln.Close()
			}
		}
	}()
	for i := range opts.Size {
		_, cfg, err := c.newSlot()
		require.NoError(t, err)
		ln, err := c.listen(i, "127.0.0.1:0")
		require.NoError(t, err)
		cfgs[i], lns[i] = cfg, ln
	}
	if opts.Peers {
		c.startFounders(cfgs, lns)
	} else {
		c.startJoining(cfgs, lns)
	}
	c.WaitMembers(opts.Size)
	return c
}

// newSlot appends a dead slot for a new node and returns its index and
// Config (without Listener, Peers or Join), also recorded as its restart
// Config, so that closeAll and Index know the node before it runs.
func (c *Cluster) newSlot(edits ...func(*node.Config)) (int, node.Config, error) {
	done := make(chan struct{})
	close(done)
	c.mu.Lock()
	i := len(c.nodes)
	c.nodes = append(c.nodes, nil)
	c.cfgs = append(c.cfgs, node.Config{})
	c.addrs = append(c.addrs, "")
	c.stopped = append(c.stopped, done)
	c.lockers = append(c.lockers, 0)
	c.mu.Unlock()
	cfg := node.Config{ID: fmt.Sprintf("n%d", i+1), SessionTTL: SessionTTL}
	if c.opts.Durable {
		cfg.DataDir = filepath.Join(c.root, strconv.Itoa(i))
		if err := os.Mkdir(cfg.DataDir, 0o700); err != nil {
			return i, cfg, err
		}
	}
	if c.opts.Edit != nil {
		c.opts.Edit(i, &cfg)
	}
	for _, edit := range edits {
		edit(&cfg)
	}
	if c.opts.Net != nil {
		cfg.Dial = c.opts.Net.Dialer(i)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfgs[i] = cfg
	return i, cfg, nil
}

// listen opens node i's listener on addr, records its address and wraps
// it in the fault layer.
func (c *Cluster) listen(i int, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.addrs[i] = ln.Addr().String()
	c.mu.Unlock()
	if c.opts.Net != nil {
		return c.opts.Net.Listener(i, ln), nil
	}
	return ln, nil
}

// listenAgain listens on node i's address again; the port may linger
// briefly after the node closed it.
func (c *Cluster) listenAgain(i int) (net.Listener, error) {
	addr := c.Addr(i)
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = c.listen(i, addr); err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond) // poll: at most 50 tries
	}
	return nil, fmt.Errorf("listen again on %s: %w", addr, err)
}

// start starts node i with cfg on ln (it owns ln from then on) and records
// it as running.
func (c *Cluster) start(i int, cfg node.Config, ln net.Listener) error {
	cfg.Listener = ln
	n, err := node.New(cfg)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("start %s: %w", cfg.ID, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[i] = n
	return nil
}

// startJoining starts node 0 as the founder, then the others joining it.
func (c *Cluster) startJoining(cfgs []node.Config, lns []net.Listener) {
	c.t.Helper()
	for i, cfg := range cfgs {
		if i == 0 {
			cfg.Peers = []node.Peer{{ID: cfg.ID}}
		} else {
			cfg.Join = c.Node(0).Addr()
		}
		require.NoError(c.t, c.start(i, cfg, lns[i]))
	}
}

// startFounders starts every node concurrently as a founding voter.
func (c *Cluster) startFounders(cfgs []node.Config, lns []net.Listener) {
	c.t.Helper()
	var peers []node.Peer
	for i, cfg := range cfgs {
		peers = append(peers, node.Peer{ID: cfg.ID, Addr: c.Addr(i)})
	}
	c.mu.Lock()
	for i := range cfgs {
		c.cfgs[i].Peers = peers // kept for restarts, as an operator's config file would be
	}
	c.mu.Unlock()
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		cfg.Peers = peers
		wg.Go(func() { errs[i] = c.start(i, cfg, lns[i]) })
	}
	wg.Wait()
	require.NoError(c.t, errors.Join(errs...))
}

// Size is the number of node slots, dead ones included.
func (c *Cluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// Node returns node i, nil while it is dead.
func (c *Cluster) Node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Live lists the indexes of the running nodes.
func (c *Cluster) Live() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, n := range c.nodes {
		if n != nil {
			out = append(out, i)
		}
	}
	return out
}

// Addr is node i's cluster address, stable across restarts.
func (c *Cluster) Addr(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[i]
}

// ID is node i's ID.
func (c *Cluster) ID(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfgs[i].ID
}

// Index maps a node ID to its index, -1 if unknown.
func (c *Cluster) Index(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, cfg := range c.cfgs {
		if cfg.ID == id {
			return i
		}
	}
	return -1
}

// NewLocker returns a new Locker of node i (an error while i is dead).
// Kill abandons it with its node; it is counted in Kill's log line.
func (c *Cluster) NewLocker(ctx context.Context, i int) (lock.Locker, error) {
	n := c.Node(i)
	if n == nil {
		return nil, fmt.Errorf("%s is dead", c.ID(i))
	}
	l, err := n.NewLocker(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i] != n { // stopped meanwhile, and the Locker with it
		_ = l.Close()
		return nil, fmt.Errorf("%s is dead", c.cfgs[i].ID)
	}
	c.lockers[i]++
	return l, nil
}

// WaitProtocol waits until every live node has committed to protocol
// level at least level (a fresh cluster raises it on its own), failing the
// test after 15 s.
func (c *Cluster) WaitProtocol(level int) {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		for _, i := range c.Live() {
			if c.Node(i).Stats().Protocol < level {
				return false
			}
		}
		return true
	}, 15*time.Second, 10*time.Millisecond, "the cluster reaches protocol level %d", level)
}
