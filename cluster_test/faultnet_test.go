package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// errCut is returned by a dial across a cut.
var errCut = errors.New("faultnet: link cut")

// acceptLookup bounds how long an accepted connection waits for its dialler
// to record the connection's local address (the dial returns to the dialler
// at about the moment the listener accepts).
const acceptLookup = 2 * time.Second

// faultNet sits between the nodes of a cluster: it wraps every node's
// Listener and Dial, tracks each connection with its (from, to) node pair,
// and cuts links on demand. A cut closes the connections across it, makes
// new dials across it fail and closes accepted connections across it at
// once. Node indexes are 0..n-1; an address or remote it cannot map to a
// node (index -1) is never cut.
type faultNet struct {
	n int

	mu      sync.Mutex
	addrs   map[string]int // listen address -> node
	dialled map[string]int // local address of a dialled conn -> dialling node
	cut     map[[2]int]bool
	conns   map[*faultConn]struct{}
	changed chan struct{} // closed and replaced when dialled grows
}

func newFaultNet(n int) *faultNet {
	return &faultNet{
		n:       n,
		addrs:   map[string]int{},
		dialled: map[string]int{},
		cut:     map[[2]int]bool{},
		conns:   map[*faultConn]struct{}{},
		changed: make(chan struct{}),
	}
}

func pair(a, b int) [2]int {
	if a > b {
		a, b = b, a
	}
	return [2]int{a, b}
}

// blockedLocked reports whether the link a-b is cut. f.mu held.
func (f *faultNet) blockedLocked(a, b int) bool {
	if a < 0 || b < 0 || a == b {
		return false
	}
	return f.cut[pair(a, b)]
}

// register tells the fault layer that node i listens on addr.
func (f *faultNet) register(i int, addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs[addr] = i
}

// addrOf is node i's registered listen address.
func (f *faultNet) addrOf(i int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a, j := range f.addrs {
		if j == i {
			return a
		}
	}
	return ""
}

// cutLocked cuts a-b and returns the connections across it. f.mu held.
func (f *faultNet) cutLocked(a, b int) []*faultConn {
	if a == b {
		return nil
	}
	f.cut[pair(a, b)] = true
	var drop []*faultConn
	for c := range f.conns {
		if pair(c.from, c.to) == pair(a, b) {
			drop = append(drop, c)
		}
	}
	return drop
}

func closeAll(cs []*faultConn) {
	for _, c := range cs {
		_ = c.Close()
	}
}

// cut cuts the link between nodes a and b, both directions.
func (f *faultNet) cutLink(a, b int) {
	f.mu.Lock()
	drop := f.cutLocked(a, b)
	f.mu.Unlock()
	closeAll(drop)
}

// isolate cuts node i from every other node.
func (f *faultNet) isolate(i int) {
	f.mu.Lock()
	var drop []*faultConn
	for j := range f.n {
		drop = append(drop, f.cutLocked(i, j)...)
	}
	f.mu.Unlock()
	closeAll(drop)
}

// partition cuts every link between nodes of different groups; a node in
// no group is cut from all others. Links already cut stay cut.
func (f *faultNet) partition(groups ...[]int) {
	group := make([]int, f.n)
	for i := range group {
		group[i] = -1 - i // alone
	}
	for g, members := range groups {
		for _, i := range members {
			group[i] = g
		}
	}
	f.mu.Lock()
	var drop []*faultConn
	for a := range f.n {
		for b := a + 1; b < f.n; b++ {
			if group[a] != group[b] {
				drop = append(drop, f.cutLocked(a, b)...)
			}
		}
	}
	f.mu.Unlock()
	closeAll(drop)
}

// reconnect heals every cut link of node i.
func (f *faultNet) reconnect(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := range f.cut {
		if p[0] == i || p[1] == i {
			delete(f.cut, p)
		}
	}
}

// heal heals every cut.
func (f *faultNet) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.cut)
}

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

// dialer returns node from's Dial.
func (f *faultNet) dialer(from int) func(ctx context.Context, addr string) (net.Conn, error) {
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
		c := &faultConn{Conn: raw, f: f, from: from, to: to}
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

// listener wraps node to's listener ln.
func (f *faultNet) listener(to int, ln net.Listener) net.Listener {
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
		c := &faultConn{Conn: raw, f: l.f, from: from, to: l.to}
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

// faultConn is a tracked connection between two nodes.
type faultConn struct {
	net.Conn
	f        *faultNet
	from, to int
}

func (c *faultConn) Close() error {
	c.f.untrack(c)
	return c.Conn.Close()
}
