package clustertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
	n int // nodes registered (1 + the greatest index)

	mu      sync.Mutex
	addrs   map[string]int // listen address -> node
	dialled map[string]int // local address of a dialled conn -> dialling node
	cut     map[[2]int]bool
	conns   map[*faultConn]struct{}
	changed chan struct{} // closed and replaced when dialled grows

	delay  map[int]time.Duration // node -> latency added to each write on its links
	drop   map[int]float64       // node -> probability that a write on its links resets the conn
	rng    *rand.Rand            // for drop; f.mu held
	paused map[int]chan struct{} // node -> closed on resume
}

func newFaultNet() *faultNet {
	return &faultNet{
		addrs:   map[string]int{},
		dialled: map[string]int{},
		cut:     map[[2]int]bool{},
		conns:   map[*faultConn]struct{}{},
		changed: make(chan struct{}),
		delay:   map[int]time.Duration{},
		drop:    map[int]float64{},
		rng:     rand.New(rand.NewPCG(1, 2)),
		paused:  map[int]chan struct{}{},
	}
}

// seed seeds the randomness of dropLinks (a scenario passes its nemesis
// seed, so that a replay drops the same writes as far as scheduling allows).
func (f *faultNet) seed(s int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rng = rand.New(rand.NewPCG(uint64(s), 2))
}

// delayLinks adds latency d to every write on a link of node i, both
// directions (each end's writes wait d before they are sent; 0 removes it).
// A write waits in the writer, so a delayed link is also a slower one:
// at most one write per d per connection.
func (f *faultNet) delayLinks(i int, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d <= 0 {
		delete(f.delay, i)
		return
	}
	f.delay[i] = d
}

// dropLinks makes each write on a link of node i reset its connection with
// probability p (0 removes it). TCP turns packet loss into delay, so what a
// lossy link shows the application is stalls (delayLinks) and resets: the
// write fails and the connection is closed, as after a peer's RST.
func (f *faultNet) dropLinks(i int, p float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p <= 0 {
		delete(f.drop, i)
		return
	}
	f.drop[i] = p
}

// pause freezes node i's traffic, as its peers would see a stopped
// process: connections stay open (no reset), nothing it writes leaves and
// nothing sent to it is read until resume (peers' writes go to kernel
// buffers); dials to it connect (the kernel accepts) and then hang the
// same way. Unlike a real SIGSTOP, the
// node's own goroutines and timers keep running, so its holders still learn
// on time that their leases ended; the process-level pause, timers
// included, is examples/lockd's SIGSTOP test.
func (f *faultNet) pause(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paused[i] == nil {
		f.paused[i] = make(chan struct{})
	}
}

// resume lets node i's traffic flow again.
func (f *faultNet) resume(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch := f.paused[i]; ch != nil {
		close(ch)
		delete(f.paused, i)
	}
}

// linkFaults returns, for a read or write at node local's end of link
// local-peer, the pause to wait out (nil if none: only a pause of local
// stops it; a peer writing to a paused node fills kernel buffers as it
// would), the delay and whether the write is dropped.
func (f *faultNet) linkFaults(local, peer int, writing bool) (pause chan struct{}, delay time.Duration, drop bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if local >= 0 {
		pause = f.paused[local]
	}
	if !writing {
		return pause, 0, false
	}
	for _, i := range [2]int{local, peer} {
		if i < 0 {
			continue
		}
		delay = max(delay, f.delay[i])
		if p := f.drop[i]; p > 0 && f.rng.Float64() < p {
			drop = true
		}
	}
	return pause, delay, drop
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

// cutLink cuts the link between nodes a and b, both directions.
func (f *faultNet) cutLink(a, b int) {
	f.mu.Lock()
	drop := f.cutLocked(a, b)
	f.mu.Unlock()
	closeAll(drop)
}

// Isolate cuts node i from every other node.
func (f *faultNet) Isolate(i int) {
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
	f.mu.Lock()
	group := make([]int, f.n)
	for i := range group {
		group[i] = -1 - i // alone
	}
	for g, members := range groups {
		for _, i := range members {
			group[i] = g
		}
	}
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

// Reconnect heals every cut link of node i.
func (f *faultNet) Reconnect(i int) {
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

// calm removes every delay, drop and pause (cuts stay: see heal).
func (f *faultNet) calm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.delay)
	clear(f.drop)
	for i, ch := range f.paused {
		close(ch)
		delete(f.paused, i)
	}
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
