package clustertest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// Helpers for the whole-cluster restart and membership scenarios. They
// reach into cluster's fields (same package) and, unlike cluster.restart,
// return errors instead of failing, so they may run off the test goroutine.

// listenAgain listens on addr again; the port may linger briefly.
func listenAgain(addr string) (net.Listener, error) {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("listen again on %s: %w", addr, err)
}

// restartAll heals the network and starts every dead node concurrently on
// its DataDir and address (each New waits for a leader, which needs a
// quorum of restarted nodes, so they cannot start one after the other). It
// returns how long each New took.
func (c *cluster) restartAll() ([]time.Duration, error) {
	c.net.heal()
	size := c.size()
	took := make([]time.Duration, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range size {
		c.mu.Lock()
		dead, stopped, cfg := c.nodes[i] == nil, c.stopped[i], c.cfgs[i]
		c.mu.Unlock()
		if !dead {
			continue
		}
		wg.Go(func() {
			<-stopped
			ln, err := listenAgain(c.addr(i))
			if err != nil {
				errs[i] = err
				return
			}
			cfg.Listener = c.net.listener(i, ln)
			start := time.Now()
			n, err := node.New(cfg)
			took[i] = time.Since(start)
			if err != nil {
				_ = ln.Close()
				errs[i] = fmt.Errorf("restart n%d: %w", i+1, err)
				return
			}
			c.mu.Lock()
			c.nodes[i] = n
			c.mu.Unlock()
		})
	}
	wg.Wait()
	return took, errors.Join(errs...)
}

// addNode starts a new node that joins the cluster through the node at
// index via, on DataDir dir (made before newCluster, so that its cleanup
// runs after the cluster's), and returns its index. Nodes have stable
// indexes: the fault layer learns the new one too.
func (c *cluster) addNode(dir string, via int) (int, error) {
	viaNode := c.node(via)
	if viaNode == nil {
		return -1, fmt.Errorf("join via n%d: dead", via+1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return -1, err
	}
	i := c.size()
	c.net.mu.Lock()
	c.net.n = i + 1
	c.net.mu.Unlock()
	c.net.register(i, ln.Addr().String())
	cfg := node.Config{
		ID:           fmt.Sprintf("n%d", i+1),
		DataDir:      dir,
		SessionTTL:   sessionTTL,
		StartTimeout: 20 * time.Second,
		Listener:     c.net.listener(i, ln),
		Dial:         c.net.dialer(i),
		Join:         viaNode.Addr(),
	}
	done := make(chan struct{})
	close(done)
	// Register the slot first (dead), so that the node is never running
	// without closeAll knowing it.
	c.mu.Lock()
	c.nodes = append(c.nodes, nil)
	c.stopped = append(c.stopped, done)
	c.lockers = append(c.lockers, map[lock.Locker]bool{})
	restartCfg := cfg
	restartCfg.Listener, restartCfg.Join = nil, ""
	c.cfgs = append(c.cfgs, restartCfg)
	c.mu.Unlock()
	n, err := node.New(cfg)
	if err != nil {
		_ = ln.Close()
		return -1, fmt.Errorf("start n%d joining via n%d: %w", i+1, via+1, err)
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
	return i, nil
}

// live lists the indexes of the running nodes.
func (c *cluster) live() []int {
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
