package node_test

import (
	"context"
	"errors"
	"net"
	"sync"
)

// cutNet is the smallest fault layer (testcluster.Network) the cluster
// tests of package node need: it isolates a node and heals it. An isolated
// node's connections are closed, its dials and dials to it fail, and
// connections it accepts are closed at once. It also makes a node a black
// hole. cluster_test's faultNet has the richer faults.
type cutNet struct {
	mu    sync.Mutex
	addrs map[string]int // listen address -> node
	cut   map[int]bool
	holed map[int]bool // black holes: what they and their peers write is dropped
	conns map[*cutConn]struct{}
}

var errCut = errors.New("cutnet: link cut")

func newCutNet() *cutNet {
	return &cutNet{addrs: map[string]int{}, cut: map[int]bool{}, holed: map[int]bool{}, conns: map[*cutConn]struct{}{}}
}

// cutConn is a connection with the nodes at its ends (-1: unknown).
type cutConn struct {
	net.Conn
	f        *cutNet
	from, to int
}

func (c *cutConn) Close() error {
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}

// Write drops what is written on a link of a black hole, as a peer that
// stopped answering (connections stay open, nothing arrives).
func (c *cutConn) Write(b []byte) (int, error) {
	c.f.mu.Lock()
	holed := c.f.holed[c.from] || c.f.holed[c.to]
	c.f.mu.Unlock()
	if holed {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// track registers c unless one of its ends is cut.
func (f *cutNet) track(c *cutConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut[c.from] || f.cut[c.to] {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *cutNet) Dialer(from int) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		f.mu.Lock()
		to, ok := f.addrs[addr]
		f.mu.Unlock()
		if !ok {
			to = -1
		}
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c := &cutConn{Conn: raw, f: f, from: from, to: to}
		if !f.track(c) {
			_ = raw.Close()
			return nil, errCut
		}
		return c, nil
	}
}

func (f *cutNet) Listener(to int, ln net.Listener) net.Listener {
	f.mu.Lock()
	f.addrs[ln.Addr().String()] = to
	f.mu.Unlock()
	return &cutListener{Listener: ln, f: f, to: to}
}

type cutListener struct {
	net.Listener
	f  *cutNet
	to int
}

func (l *cutListener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &cutConn{Conn: raw, f: l.f, from: -1, to: l.to}
		if l.f.track(c) {
			return c, nil
		}
		_ = raw.Close()
	}
}

// Isolate cuts node i off: its connections close and new ones fail.
func (f *cutNet) Isolate(i int) {
	f.mu.Lock()
	f.cut[i] = true
	var drop []*cutConn
	for c := range f.conns {
		if c.from == i || c.to == i {
			drop = append(drop, c)
		}
	}
	f.mu.Unlock()
	for _, c := range drop {
		_ = c.Close()
	}
}

// Reconnect heals node i.
func (f *cutNet) Reconnect(i int) {
	f.mu.Lock()
	delete(f.cut, i)
	f.mu.Unlock()
}

// blackhole makes node i a black hole for good: every write on its links,
// both directions, is dropped; connections open and stay open.
func (f *cutNet) blackhole(i int) {
	f.mu.Lock()
	f.holed[i] = true
	f.mu.Unlock()
}
