package transport

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Raft returns a new raft.StreamLayer on this Transport's listener, for
// raft.NewNetworkTransportWithConfig:
//
//	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
//		Stream: tr.Raft(), MaxPool: 3, Timeout: 10 * time.Second, Logger: ...})
//
// Accept yields incoming connections whose protocol byte selected Raft
// (after TLS); Dial connects to a peer's Transport and selects Raft; Addr
// is Transport.Addr. Close (which raft.Shutdown reaches through the
// NetworkTransport) stops this layer's Accept and closes the connections it
// accepted or dialled, but leaves the Transport and its RPC side running,
// so a new layer can serve a restarted Raft instance. Keep one layer open
// at a time: open layers share incoming connections.
func (t *Transport) Raft() raft.StreamLayer {
	return &raftLayer{t: t, done: make(chan struct{}), conns: make(map[*conn]struct{})}
}

type raftLayer struct {
	t      *Transport
	mu     sync.Mutex
	closed bool
	done   chan struct{}
	conns  map[*conn]struct{}
}

var _ raft.StreamLayer = (*raftLayer)(nil)

// handoffRaft offers an accepted Raft connection to a layer's Accept for
// at most HandshakeTimeout; if none takes it (Raft not running), it is
// closed and the peer redials.
func (t *Transport) handoffRaft(c *conn, remote string) {
	timer := time.NewTimer(t.cfg.HandshakeTimeout)
	defer timer.Stop()
	select {
	case t.raftq <- c:
	case <-timer.C:
		t.st.raftQueueTimeouts.Add(1)
		t.log.Info("raft connection closed: no Raft layer accepted it", "remote_addr", remote)
		_ = c.Close()
	case <-t.ctx.Done():
		_ = c.Close()
	}
}

// Accept waits for the next incoming Raft connection.
func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.t.raftq:
		if !l.adopt(c) {
			_ = c.Close()
			return nil, ErrClosed
		}
		return c, nil
	case <-l.done:
		return nil, ErrClosed
	case <-l.t.ctx.Done():
		return nil, ErrClosed
	}
}

// Dial connects to the Transport at address and selects Raft, within
// timeout (DialTimeout if timeout is not positive).
func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if l.isClosed() || l.t.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if timeout <= 0 {
		timeout = l.t.cfg.DialTimeout
	}
	ctx, cancel := context.WithTimeout(l.t.ctx, timeout)
	defer cancel()
	c, err := l.t.dial(ctx, string(address), muxRaft)
	if err != nil {
		if l.t.ctx.Err() != nil {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, address, err)
	}
	c.onClose = func() { l.t.untrack(c) }
	if !l.t.track(c, func() { _ = c.Close() }) || !l.adopt(c) {
		_ = c.Close()
		return nil, ErrClosed
	}
	return c, nil
}

// Close stops Accept and closes this layer's connections. Idempotent.
func (l *raftLayer) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	conns := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return nil
}

// Addr is the Transport's advertised address.
func (l *raftLayer) Addr() net.Addr { return advertised(l.t.addr) }

func (l *raftLayer) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// adopt makes c this layer's (closed with it); false if the layer closed.
func (l *raftLayer) adopt(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	c.layer.Store(l)
	return true
}

func (l *raftLayer) forget(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// advertised is a TCP address as configured (not resolved).
type advertised string

func (a advertised) Network() string { return "tcp" }
func (a advertised) String() string  { return string(a) }
