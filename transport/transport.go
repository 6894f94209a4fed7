package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// keepAlive is the TCP keep-alive period of every connection: how an idle
// pooled connection to a vanished peer is eventually noticed.
const keepAlive = 15 * time.Second

// Transport is one node's listener and dialler for Raft streams and RPC.
// Create it with New; all methods are safe for concurrent use.
type Transport struct {
	cfg       Config
	log       *slog.Logger
	ln        net.Listener
	addr      string      // advertised address
	serverTLS *tls.Config // nil without TLS

	// ctx ends when Close starts: it aborts dials and TLS handshakes, ends
	// handler contexts and Raft Accepts.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	conns  map[any]func()   // everything Close must close, with how
	peers  map[string]*peer // Call's pools, by address
	wg     sync.WaitGroup   // every goroutine the Transport started

	closeOnce sync.Once

	raftq chan *conn // hand-off from handshakes to a Raft layer's Accept

	dialled sync.Map // member IDs of the servers dialled (HasDialled)

	ipMu  sync.Mutex
	perIP map[string]int // accepted connections open, by remote IP address

	st counters
}

// New validates cfg, listens on cfg.Addr and starts accepting. Close it to
// release the port and stop every goroutine it started.
func New(cfg Config) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		lc := net.ListenConfig{KeepAlive: keepAlive}
		if ln, err = lc.Listen(context.Background(), "tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("transport: listen on Addr %q: %w", cfg.Addr, err)
		}
	}
	t := &Transport{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "transport"),
		ln:    ln,
		addr:  cfg.AdvertiseAddr,
		conns: make(map[any]func()),
		peers: make(map[string]*peer),
		raftq: make(chan *conn),
		perIP: make(map[string]int),
	}
	if t.addr == "" {
		t.addr = ln.Addr().String()
	}
	if cfg.TLS != nil {
		t.serverTLS = serverTLS(cfg.TLS)
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.spawn(t.acceptLoop)
	t.log.Debug("listening", "addr", ln.Addr().String(), "advertise_addr", t.addr, "tls", cfg.TLS != nil)
	return t, nil
}

// Addr is the address peers dial to reach this node (Config.AdvertiseAddr,
// or the listener's address), for Call and as the Raft server address.
func (t *Transport) Addr() string { return t.addr }

// Close stops the listener, closes every connection the Transport accepted
// or dialled (Raft ones included), fails pending calls with ErrClosed,
// cancels running handlers' contexts and waits for all its goroutines —
// including handlers, which must return once their ctx ends. It is
// idempotent, always returns nil, and is safe on a nil *Transport (after a
// failed New).
func (t *Transport) Close() error {
	if t == nil {
		return nil
	}
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		closers := make([]func(), 0, len(t.conns))
		for _, fn := range t.conns {
			closers = append(closers, fn)
		}
		t.mu.Unlock()

		// Connections first, then the context: a handler that returns
		// because its ctx ended finds its connection already gone, so its
		// caller sees ErrConnLost (retryable), not the handler's ctx error.
		_ = t.ln.Close()
		for _, fn := range closers {
			fn()
		}
		t.cancel()
		t.wg.Wait()
		t.log.Debug("closed", "addr", t.addr)
	})
	return nil
}

// spawn runs fn in a goroutine that Close waits for; false once closed.
func (t *Transport) spawn(fn func()) bool {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return false
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		fn()
	}()
	return true
}

// spawnChild is spawn for callers that themselves run in a spawned
// goroutine: the WaitGroup cannot be at zero, so no lock is needed.
func (t *Transport) spawnChild(fn func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		fn()
	}()
}

// track registers something Close must close; false once closed (the
// caller then closes it itself).
func (t *Transport) track(key any, closeFn func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[key] = closeFn
	return true
}

func (t *Transport) untrack(key any) {
	t.mu.Lock()
	delete(t.conns, key)
	t.mu.Unlock()
}

// conn is a connection the Transport owns. Reads and writes go through the
// embedded net.Conn (the TLS connection when TLS is on). Close closes raw,
// the TCP connection underneath — prompt even where a TLS close_notify
// would block on a peer that stopped reading — and runs the bookkeeping
// once.
type conn struct {
	net.Conn
	raw     net.Conn
	once    sync.Once
	onClose func()                    // set before the conn is shared
	peer    string                    // the peer's member ID; "" without TLS or key
	layer   atomic.Pointer[raftLayer] // the Raft layer that owns it, if any
}

func newConn(nc, raw net.Conn, onClose func()) *conn {
	return &conn{Conn: nc, raw: raw, onClose: onClose}
}

func (c *conn) Close() error {
	err := c.raw.Close()
	c.once.Do(func() {
		if c.onClose != nil {
			c.onClose()
		}
		if l := c.layer.Load(); l != nil {
			l.forget(c)
		}
	})
	return err
}

func (t *Transport) acceptLoop() {
	var delay time.Duration
	for {
		nc, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep going.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("accept failed", "error", err, "retry_in", delay)
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-t.ctx.Done():
				timer.Stop()
				return
			}
			continue
		}
		delay = 0
		t.st.connsAccepted.Add(1)
		// Only this goroutine increments the two gauges, so check-then-add
		// cannot overshoot.
		if t.st.activeConns.Load() >= int64(t.cfg.MaxConns) {
			t.st.connsRejected.Add(1)
			t.log.Debug("connection rejected: MaxConns reached", "remote_addr", nc.RemoteAddr().String())
			_ = nc.Close()
			continue
		}
		if t.st.pendingHandshakes.Load() >= int64(t.cfg.MaxPendingHandshakes) {
			t.st.handshakesRejected.Add(1)
			t.log.Debug("connection rejected: MaxPendingHandshakes reached", "remote_addr", nc.RemoteAddr().String())
			_ = nc.Close()
			continue
		}
		ip := ipKey(nc.RemoteAddr())
		if !t.admitIP(ip) {
			t.st.connsRejectedPerIP.Add(1)
			t.log.Debug("connection rejected: MaxConnsPerIP reached", "remote_addr", nc.RemoteAddr().String())
			_ = nc.Close()
			continue
		}
		t.st.activeConns.Add(1)
		t.st.pendingHandshakes.Add(1)
		c := newConn(nc, nc, nil)
		c.onClose = func() {
			t.untrack(c)
			t.releaseIP(ip)
			t.st.activeConns.Add(-1)
		}
		if !t.track(c, func() { _ = c.Close() }) || !t.spawn(func() { t.handshake(c) }) {
			t.st.pendingHandshakes.Add(-1)
			_ = c.Close()
			return
		}
	}
}

// ipKey is what MaxConnsPerIP counts by: the remote IP address without
// the port, or the whole address of a listener that is not TCP.
func ipKey(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// admitIP counts one more connection from ip, unless MaxConnsPerIP are
// open already.
func (t *Transport) admitIP(ip string) bool {
	t.ipMu.Lock()
	defer t.ipMu.Unlock()
	if t.perIP[ip] >= t.cfg.MaxConnsPerIP {
		return false
	}
	t.perIP[ip]++
	return true
}

func (t *Transport) releaseIP(ip string) {
	t.ipMu.Lock()
	defer t.ipMu.Unlock()
	if t.perIP[ip]--; t.perIP[ip] <= 0 {
		delete(t.perIP, ip)
	}
}

// handshake runs the TLS handshake (if configured) and reads the protocol
// byte, both under one deadline, then hands the connection to its
// protocol. It runs in its own goroutine per connection.
func (t *Transport) handshake(c *conn) {
	pending := true
	endPending := func() {
		if pending {
			pending = false
			t.st.pendingHandshakes.Add(-1)
		}
	}
	defer endPending()
	remote := c.RemoteAddr().String()

	if err := c.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout)); err != nil {
		_ = c.Close()
		return
	}
	if t.serverTLS != nil {
		tc := tls.Server(c.raw, t.serverTLS)
		if err := tc.HandshakeContext(t.ctx); err != nil {
			endPending()
			t.handshakeFailed(c, remote, err, true)
			return
		}
		c.Conn = tc
	}
	peer, err := t.authenticate(c.Conn, true)
	if err != nil {
		endPending()
		t.authFailed(c, remote, err)
		return
	}
	c.peer = peer
	var b [1]byte
	if _, err := io.ReadFull(c.Conn, b[:]); err != nil {
		endPending()
		t.handshakeFailed(c, remote, err, false)
		return
	}
	endPending()

	// Counted as soon as the byte is read, whatever happens next.
	switch b[0] {
	case muxRaft:
		t.st.raftConnsAccepted.Add(1)
	case muxRPC:
		t.st.rpcConnsAccepted.Add(1)
	default:
		t.st.badFirstBytes.Add(1)
		t.log.Info("connection closed: unknown protocol byte", "remote_addr", remote, "mux_byte", b[0])
		_ = c.Close()
		return
	}
	if err := c.SetDeadline(time.Time{}); err != nil { // each protocol sets its own
		_ = c.Close()
		return
	}
	if b[0] == muxRaft {
		t.handoffRaft(c, remote)
	} else {
		t.serveRPC(c)
	}
}

// handshakeFailed counts (before closing, so that a peer seeing the close
// also sees the count) and closes.
func (t *Transport) handshakeFailed(c *conn, remote string, err error, inTLS bool) {
	switch {
	case t.ctx.Err() != nil:
		// Closing.
	case isTimeout(err):
		t.st.handshakeTimeouts.Add(1)
		t.log.Debug("connection closed: handshake deadline passed", "remote_addr", remote, "tls", inTLS)
	case inTLS:
		t.st.tlsFailures.Add(1)
		t.log.Info("connection closed: TLS handshake failed", "remote_addr", remote, "error", err)
	default:
		t.log.Debug("connection closed before its protocol byte", "remote_addr", remote, "error", err)
	}
	_ = c.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// dial connects to addr, runs the TLS handshake if configured and writes
// the protocol byte, all within ctx.
func (t *Transport) dial(ctx context.Context, addr string, proto byte) (*conn, error) {
	var raw net.Conn
	var err error
	if t.cfg.Dial != nil {
		raw, err = t.cfg.Dial(ctx, addr)
	} else {
		d := net.Dialer{KeepAlive: keepAlive}
		raw, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	nc := raw
	if t.cfg.TLS != nil {
		tc := tls.Client(raw, clientTLS(t.cfg.TLS, addr))
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		nc = tc
	}
	peer, err := t.authenticateDialled(ctx, nc)
	if err != nil {
		_ = raw.Close()
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetWriteDeadline(dl)
	}
	if _, err := nc.Write([]byte{proto}); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("write protocol byte: %w", err)
	}
	if err := nc.SetWriteDeadline(time.Time{}); err != nil {
		_ = raw.Close()
		return nil, err
	}
	c := newConn(nc, raw, nil)
	c.peer = peer
	if peer != "" {
		t.dialled.Store(peer, struct{}{})
	}
	return c, nil
}
