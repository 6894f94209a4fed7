package clustertest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

const sessionTTL = 2 * time.Second

// cluster is n durable nodes over loopback TCP behind a faultNet. Node i
// has ID "n<i+1>". A dead node is nil in nodes until restart.
type cluster struct {
	t   *testing.T
	net *faultNet

	mu      sync.Mutex
	nodes   []*node.Node
	cfgs    []node.Config
	stopped []chan struct{}        // closed when node i's last Close returned
	lockers []map[lock.Locker]bool // made by newLocker, closed by kill
	bg      sync.WaitGroup         // background Closes of killed nodes
}

// newCluster starts n nodes: n1 founds the cluster, the others join it.
// Each option edits every node's Config before it starts. Cleanup closes
// every node concurrently and waits for background Closes.
func newCluster(t *testing.T, n int, opts ...func(*node.Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, net: newFaultNet(n)}
	dirs := make([]string, n)
	for i := range dirs {
		// Before registering the cleanup below, so that the directories are
		// removed after the nodes stopped.
		dirs[i] = t.TempDir()
	}
	t.Cleanup(c.closeAll)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		c.net.register(i, ln.Addr().String())
		cfg := node.Config{
			ID:           fmt.Sprintf("n%d", i+1),
			DataDir:      dirs[i],
			SessionTTL:   sessionTTL,
			StartTimeout: 20 * time.Second,
			Listener:     c.net.listener(i, ln),
			Dial:         c.net.dialer(i),
		}
		for _, opt := range opts {
			opt(&cfg)
		}
		if i == 0 {
			cfg.Peers = []node.Peer{{ID: cfg.ID}}
		} else {
			cfg.Join = c.nodes[0].Addr()
		}
		nd, err := node.New(cfg)
		if err != nil {
			_ = ln.Close()
		}
		require.NoError(t, err, "start %s", cfg.ID)
		// A restart reuses the address peers know, and the state on disk.
		cfg.Listener, cfg.Join, cfg.Peers = nil, "", nil
		done := make(chan struct{})
		close(done)
		c.mu.Lock()
		c.nodes = append(c.nodes, nd)
		c.cfgs = append(c.cfgs, cfg)
		c.stopped = append(c.stopped, done)
		c.lockers = append(c.lockers, map[lock.Locker]bool{})
		c.mu.Unlock()
	}
	c.waitMembers(n)
	return c
}

func (c *cluster) size() int { return len(c.cfgs) }

// node returns node i, nil while it is dead.
func (c *cluster) node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// newLocker returns a new Locker of node i (an error while i is dead).
// kill closes it together with the node: a node closes its clients one
// after the other, each trying to end its session for up to 5 s, which cut
// off would make a killed node take 5 s per client to stop.
func (c *cluster) newLocker(ctx context.Context, i int) (lock.Locker, error) {
	n := c.node(i)
	if n == nil {
		return nil, fmt.Errorf("n%d is dead", i+1)
	}
	l, err := n.NewLocker(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i] != n { // killed meanwhile: kill closed the node
		_ = l.Close()
		return nil, fmt.Errorf("n%d is dead", i+1)
	}
	c.lockers[i][l] = true
	return l, nil
}

// addr is node i's cluster address, stable across restarts.
func (c *cluster) addr(i int) string {
	return c.net.addrOf(i)
}

// index maps a node ID ("n3") to its index, -1 if unknown.
func (c *cluster) index(id string) int {
	for i, cfg := range c.cfgs {
		if cfg.ID == id {
			return i
		}
	}
	return -1
}

// waitMembers waits until every live node sees size members and a leader.
func (c *cluster) waitMembers(size int) {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		for i := range c.size() {
			n := c.node(i)
			if n == nil {
				continue
			}
			m, err := n.Members()
			if err != nil || len(m) != size {
				return false
			}
			if id, _ := n.Leader(); id == "" {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond)
}

// leader returns the index of the live node that leads, as it sees itself
// and as another live node names it, polling for up to 10 s.
func (c *cluster) leader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i := range c.size() {
			n := c.node(i)
			if n == nil {
				continue
			}
			id, _ := n.Leader()
			li := c.index(id)
			if li < 0 {
				continue
			}
			if ln := c.node(li); ln != nil && ln.Stats().State == "leader" {
				return li
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader within 10 s")
	return -1
}

// kill crashes node i as its peers see it: it is isolated at once, then
// closed in the background (Close cannot reach the cluster, so its sessions
// expire on the leader as a crashed process's would). restart waits for
// that Close.
func (c *cluster) kill(i int) {
	c.t.Helper()
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	done := make(chan struct{})
	if n != nil {
		c.stopped[i] = done
	}
	lockers := c.lockers[i]
	c.lockers[i] = map[lock.Locker]bool{}
	c.mu.Unlock()
	if n == nil {
		c.t.Fatalf("kill n%d: already dead", i+1)
	}
	c.net.isolate(i)
	// Abort: no session release, no leadership transfer — a crash as its
	// peers see it. It also abandons the node's lockers.
	start := time.Now()
	if err := n.Abort(); err != nil {
		c.t.Logf("abort n%d: %v", i+1, err)
	}
	c.t.Logf("killed n%d in %v (%d lockers abandoned)", i+1, time.Since(start).Round(time.Millisecond), len(lockers))
	close(done)
}

// restart starts dead node i again on its DataDir and address, once its
// Close returned, and heals its links.
func (c *cluster) restart(i int) {
	c.t.Helper()
	c.mu.Lock()
	dead, stopped := c.nodes[i] == nil, c.stopped[i]
	c.mu.Unlock()
	if !dead {
		c.t.Fatalf("restart n%d: running", i+1)
	}
	<-stopped
	addr := c.addr(i)
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(c.t, err, "listen again on %s", addr)
	c.net.reconnect(i)
	cfg := c.cfgs[i]
	cfg.Listener = c.net.listener(i, ln)
	n, err := node.New(cfg)
	if err != nil {
		_ = ln.Close()
	}
	require.NoError(c.t, err, "restart n%d", i+1)
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
}

// closeAll closes every live node concurrently and waits for the
// background Closes of killed ones.
func (c *cluster) closeAll() {
	c.mu.Lock()
	nodes := append([]*node.Node(nil), c.nodes...)
	for i := range c.nodes {
		c.nodes[i] = nil
	}
	c.mu.Unlock()
	// Abort, not Close: closed together, the last members would each wait
	// out the session-close timeout for a quorum that is already gone.
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n != nil {
			wg.Go(func() { _ = n.Abort() })
		}
	}
	wg.Wait()
	c.bg.Wait()
}
