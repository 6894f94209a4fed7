package zookeeper_test

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
)

// gate is a zk.Dialer whose connections a test can cut: while cut, the
// open connections are closed and new dials fail, so the server hears
// nothing from the session and expires it after the session timeout.
//
// Armed by arm(&g.dropCreate), it closes the connection right after the
// next create request has been written, so that the server applies the
// create but the client never sees the reply. Armed by arm(&g.failCreate),
// it closes the connection just before the next create request is written,
// so that the write itself fails: go-zookeeper then hands the request the
// raw write error (a *net.OpError), not ErrConnectionClosed.
type gate struct {
	mu         sync.Mutex
	cut        bool
	dropCreate bool
	failCreate bool
	dropped    int
	failed     int
	conns      []net.Conn
	// holdSet, if not nil, holds the next SetData request's write until
	// it is closed (holdSetData).
	holdSet chan struct{}
}

func (g *gate) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cut {
		return nil, errors.New("gate: cut")
	}
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	g.conns = append(g.conns, c)
	return &gatedConn{Conn: c, g: g}, nil
}

type gatedConn struct {
	net.Conn
	g *gate
}

// Write sends one request packet (go-zookeeper writes each in one call:
// length, xid, opcode, body).
func (c *gatedConn) Write(b []byte) (int, error) {
	if hold := c.g.takeHold(b); hold != nil {
		<-hold
	}
	if c.g.take(b, &c.g.failCreate, &c.g.failed) {
		_ = c.Close()
	}
	n, err := c.Conn.Write(b)
	if c.g.take(b, &c.g.dropCreate, &c.g.dropped) {
		_ = c.Close()
	}
	return n, err
}

// take reports whether packet is a create request and *armed was set; it
// then disarms it and counts it in *count.
func (g *gate) take(packet []byte, armed *bool, count *int) bool {
	const opCreate, opCreateTTL = 1, 21
	if len(packet) < 12 {
		return false
	}
	op := binary.BigEndian.Uint32(packet[8:12])
	g.mu.Lock()
	defer g.mu.Unlock()
	if !*armed || (op != opCreate && op != opCreateTTL) {
		return false
	}
	*armed = false
	*count++
	return true
}

// holdSetData makes the next SetData request (a TTL Refresh) wait before
// it is written, until the returned function is called.
func (g *gate) holdSetData() (release func()) {
	hold := make(chan struct{})
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holdSet = hold
	return func() { close(hold) }
}

// takeHold returns the armed hold if packet is a SetData request, and
// disarms it.
func (g *gate) takeHold(packet []byte) chan struct{} {
	const opSetData = 5
	if len(packet) < 12 || binary.BigEndian.Uint32(packet[8:12]) != opSetData {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	hold := g.holdSet
	g.holdSet = nil
	return hold
}

// arm sets one of g's flags (&g.dropCreate, &g.failCreate).
func (g *gate) arm(flag *bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	*flag = true
}

// count reads one of g's counters (&g.dropped, &g.failed).
func (g *gate) count(n *int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return *n
}

func (g *gate) Cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cut = true
	for _, c := range g.conns {
		_ = c.Close()
	}
	g.conns = nil
}

func (g *gate) Heal() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cut = false
}

// newGatedLocker returns a Locker on a connection (made by the test, passed
// as Config.Conn) whose traffic the returned gate can cut.
func newGatedLocker(t testing.TB, servers []string, timeout time.Duration) (*zookeeper.Locker, *gate) {
	t.Helper()
	g := &gate{}
	conn, _, err := zk.Connect(servers, timeout, zk.WithDialer(g.dial), zk.WithLogger(discard{}), zk.WithLogInfo(false))
	require.NoError(t, err)
	t.Cleanup(conn.Close) // after the Locker's Close (cleanups run last first)
	return startLocker(t, zookeeper.Config{Conn: conn, SessionTimeout: timeout}), g
}
