package clustertest

import (
	"math/rand/v2"
	"sync"
	"time"
)

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
