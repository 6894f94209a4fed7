package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// The connections of the fault layer: faultNet's Dialer and Listener wrap
// every connection between nodes in a faultConn that knows its (from, to)
// node pair and honours the faults of faultnet_test.go.

// errCut is returned by a dial across a cut.
var errCut = errors.New("faultnet: link cut")

// acceptLookup bounds how long an accepted connection waits for its dialler
// to record the connection's local address (the dial returns to the dialler
// at about the moment the listener accepts).
const acceptLookup = 2 * time.Second

// track registers c unless its link is cut; it reports whether it did.
func (f *faultNet) track(c *faultConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blockedLocked(c.from, c.to) {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *faultNet) untrack(c *faultConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

// Dialer returns node from's Dial.
func (f *faultNet) Dialer(from int) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		f.mu.Lock()
		to, ok := f.addrs[addr]
		if !ok {
			to = -1
		}
		blocked := f.blockedLocked(from, to)
		f.mu.Unlock()
		if blocked {
			return nil, fmt.Errorf("dial n%d -> n%d (%s): %w", from+1, to+1, addr, errCut)
		}
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c := newFaultConn(raw, f, from, to, from)
		f.mu.Lock()
		f.dialled[raw.LocalAddr().String()] = from
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
		if !f.track(c) {
			_ = raw.Close()
			return nil, fmt.Errorf("dial n%d -> n%d (%s): %w", from+1, to+1, addr, errCut)
		}
		return c, nil
	}
}

// Listener wraps node to's listener ln, and registers its address: the
// fault layer learns every node, also one added later, this way.
func (f *faultNet) Listener(to int, ln net.Listener) net.Listener {
	f.mu.Lock()
	f.addrs[ln.Addr().String()] = to
	f.n = max(f.n, to+1)
	f.mu.Unlock()
	return &faultListener{Listener: ln, f: f, to: to, closed: make(chan struct{})}
}

type faultListener struct {
	net.Listener
	f         *faultNet
	to        int
	closeOnce sync.Once
	closed    chan struct{}
}

func (l *faultListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *faultListener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		from := l.from(raw.RemoteAddr().String())
		c := newFaultConn(raw, l.f, from, l.to, l.to)
		if !l.f.track(c) {
			_ = raw.Close()
			continue
		}
		return c, nil
	}
}

// from maps an accepted connection's remote address to the dialling node,
// waiting briefly for the dialler to record it; -1 if it never does.
func (l *faultListener) from(remote string) int {
	timer := time.NewTimer(acceptLookup)
	defer timer.Stop()
	for {
		l.f.mu.Lock()
		from, ok := l.f.dialled[remote]
		changed := l.f.changed
		l.f.mu.Unlock()
		if ok {
			return from
		}
		select {
		case <-changed:
		case <-timer.C:
			return -1
		case <-l.closed:
			return -1
		}
	}
}

// faultConn is a tracked connection between two nodes. Reads and writes
// honour the pause, delay and drop faults of both ends' nodes.
type faultConn struct {
	net.Conn
	f         *faultNet
	from, to  int
	local     int // the node at this end: from if dialled, to if accepted
	closeOnce sync.Once
	closed    chan struct{}
}

func newFaultConn(raw net.Conn, f *faultNet, from, to, local int) *faultConn {
	return &faultConn{Conn: raw, f: f, from: from, to: to, local: local, closed: make(chan struct{})}
}

// peer is the node at the other end.
func (c *faultConn) peer() int {
	if c.local == c.from {
		return c.to
	}
	return c.from
}

func (c *faultConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	c.f.untrack(c)
	return c.Conn.Close()
}

// hold waits out a pause of either end, then d; false if the conn closed
// meanwhile.
func (c *faultConn) hold(pause chan struct{}, d time.Duration) bool {
	if pause != nil {
		select {
		case <-pause:
		case <-c.closed:
			return false
		}
	}
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.closed:
			return false
		}
	}
	return true
}

func (c *faultConn) Write(b []byte) (int, error) {
	pause, delay, drop := c.f.linkFaults(c.local, c.peer(), true)
	if !c.hold(pause, delay) {
		return 0, net.ErrClosed
	}
	if drop {
		_ = c.Close()
		return 0, fmt.Errorf("write n%d <-> n%d: %w (dropped)", c.from+1, c.to+1, net.ErrClosed)
	}
	return c.Conn.Write(b)
}

// Read delivers what arrived only once neither end is paused: a paused
// node neither receives nor, by its peers' account, answers.
func (c *faultConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if pause, _, _ := c.f.linkFaults(c.local, c.peer(), false); pause != nil && !c.hold(pause, 0) {
		return 0, net.ErrClosed
	}
	return n, err
}
