package testcluster

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/node"
)

// Stop marks node i dead and stops it with stop — (*node.Node).Abort,
// (*node.Node).Close, or a Leave — returning stop's error; an error without
// calling stop if node i is already dead. Restart waits for stop to return.
func (c *Cluster) Stop(i int, stop func(*node.Node) error) error {
	_, err := c.stop(i, stop)
	return err
}

// stop is Stop, also returning how many Lockers NewLocker had made on the
// node since it started.
func (c *Cluster) stop(i int, stop func(*node.Node) error) (lockers int, err error) {
	c.mu.Lock()
	n := c.nodes[i]
	if n == nil {
		c.mu.Unlock()
		return 0, fmt.Errorf("stop %s: already dead", c.cfgs[i].ID)
	}
	c.nodes[i] = nil
	done := make(chan struct{})
	c.stopped[i] = done
	lockers, c.lockers[i] = c.lockers[i], 0
	c.mu.Unlock()
	defer close(done)
	return lockers, stop(n)
}

// Kill crashes node i as its peers see it: the fault layer (if any)
// isolates it at once, then node.Abort stops it — no session release, no
// leadership transfer — abandoning its Lockers. Its sessions expire on the
// leader as a crashed process's would.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	start := time.Now()
	lockers, err := c.stop(i, func(n *node.Node) error {
		if c.opts.Net != nil {
			c.opts.Net.Isolate(i)
		}
		start = time.Now()
		if err := n.Abort(); err != nil {
			c.t.Logf("abort %s: %v", c.ID(i), err)
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("kill: %v", err)
	}
	c.t.Logf("killed %s in %v (%d lockers abandoned)", c.ID(i), time.Since(start).Round(time.Millisecond), lockers)
}

// Close stops node i gracefully (node.Close: leadership transfer, sessions
// released), like a rolling restart does; Restart starts it again.
func (c *Cluster) Close(i int) {
	c.t.Helper()
	err := c.Stop(i, (*node.Node).Close)
	assert.NoError(c.t, err, "close %s", c.ID(i))
}

// Restart starts dead node i again on its DataDir and address, once its
// stop returned, after the fault layer reconnected it.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	_, err := c.restart(i)
	require.NoError(c.t, err)
}

// RestartAll starts every dead node again concurrently, as Restart does
// (each New waits for a leader, which needs a quorum of restarted nodes,
// so they cannot start one after the other). It returns how long each New
// took. Unlike Restart it returns errors instead of failing the test.
func (c *Cluster) RestartAll() ([]time.Duration, error) {
	size := c.Size()
	took := make([]time.Duration, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range size {
		if c.Node(i) == nil {
			wg.Go(func() { took[i], errs[i] = c.restart(i) })
		}
	}
	wg.Wait()
	return took, errors.Join(errs...)
}

// restart is Restart returning its error and how long New took.
func (c *Cluster) restart(i int) (time.Duration, error) {
	c.mu.Lock()
	dead, stopped, cfg := c.nodes[i] == nil, c.stopped[i], c.cfgs[i]
	c.mu.Unlock()
	if !dead {
		return 0, fmt.Errorf("restart %s: running", cfg.ID)
	}
	<-stopped
	ln, err := c.listenAgain(i)
	if err != nil {
		return 0, err
	}
	if c.opts.Net != nil {
		c.opts.Net.Reconnect(i)
	}
	start := time.Now()
	err = c.start(i, cfg, ln)
	return time.Since(start), err
}

// Add starts a new node that joins the cluster through node via and
// returns its index (the next slot). Options.Edit and then edits edit its
// Config. Unlike Start it returns errors instead of failing the test, so
// it may run off the test goroutine.
func (c *Cluster) Add(via int, edits ...func(*node.Config)) (int, error) {
	viaNode := c.Node(via)
	if viaNode == nil {
		return -1, fmt.Errorf("join via %s: dead", c.ID(via))
	}
	i, cfg, err := c.newSlot(edits...)
	if err != nil {
		return -1, err
	}
	ln, err := c.listen(i, "127.0.0.1:0")
	if err != nil {
		return -1, err
	}
	cfg.Join = viaNode.Addr()
	if err := c.start(i, cfg, ln); err != nil {
		return -1, fmt.Errorf("joining via %s: %w", c.ID(via), err)
	}
	return i, nil
}

// closeAll aborts every live node concurrently. Abort, not Close: closed
// together, the last members would each wait out the session-close
// timeout for a quorum that is already gone. Graceful Close has tests of
// its own.
func (c *Cluster) closeAll() {
	c.mu.Lock()
	nodes := append([]*node.Node(nil), c.nodes...)
	clear(c.nodes)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n != nil {
			wg.Go(func() { _ = n.Abort() })
		}
	}
	wg.Wait()
}
