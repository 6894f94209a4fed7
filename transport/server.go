package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Handler serves RPC requests arriving at a Transport. The payload and the
// reply are opaque bytes. ServeRPC is called concurrently, also for
// requests on the same connection.
//
// ctx ends when the caller's deadline passes, the caller gives up, the
// connection breaks or the Transport closes; the handler must then return
// promptly (Close waits for it). A returned error reaches the caller as a
// *RemoteError carrying only its message. The Transport may keep the
// returned slice until it is written; do not modify it after returning.
type Handler interface {
	ServeRPC(ctx context.Context, payload []byte) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, payload []byte) ([]byte, error)

// ServeRPC calls f.
func (f HandlerFunc) ServeRPC(ctx context.Context, payload []byte) ([]byte, error) {
	return f(ctx, payload)
}

// serverConn serves one incoming RPC connection: the accepting goroutine
// reads, each request runs in its own goroutine (at most
// MaxInFlightPerConn, holding at most MaxInFlightBytesPerConn of payload),
// replies go through the wire's writer.
type serverConn struct {
	*wire
	ctx    context.Context // ends with the connection
	slots  chan struct{}   // semaphore of running handlers
	mu     sync.Mutex
	active map[uint64]*running // running, not cancelled by the caller
	bytes  int                 // payload bytes of the running handlers
	// quietSince is when the last frame arrived or the last handler in
	// active ended: the start of the idle time once active is empty.
	quietSince time.Time
}

// serveRPC serves c until it fails or the Transport closes. It runs in a
// spawned goroutine (the handshake's).
func (t *Transport) serveRPC(c *conn) {
	ctx, cancel := context.WithCancel(withPeerID(t.ctx, c.peer))
	defer cancel() // ends every handler's ctx on this connection
	sc := &serverConn{
		wire:   newWire(t, c),
		ctx:    ctx,
		slots:  make(chan struct{}, t.cfg.MaxInFlightPerConn),
		active: make(map[uint64]*running),

		quietSince: time.Now(),
	}
	sc.inFlight = func() int { return len(sc.slots) }
	t.spawnChild(sc.writeLoop)
	err := sc.readLoop()
	if errors.Is(err, errIdle) {
		t.st.idleTimeouts.Add(1)
	}
	sc.readFailed(err, "server")
}

func (sc *serverConn) readLoop() error {
	for {
		f, err := sc.next(sc.idle)
		if err != nil {
			return err
		}
		switch f.kind {
		case kindRequest:
			timeout, payload, err := parseRequest(f.body)
			if err != nil {
				return err
			}
			if err := sc.start(f.id, timeout, payload); err != nil {
				return err
			}
		case kindCancel:
			sc.cancel(f.id)
		default:
			return fmt.Errorf("%w: frame kind %d sent to a server", ErrProtocol, f.kind)
		}
	}
}

// idle is the server's idleCheck: idle once no request awaits its reply
// and nothing arrived for IdleTimeout.
func (sc *serverConn) idle(now time.Time) (time.Time, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	limit := sc.t.cfg.IdleTimeout
	if len(sc.active) > 0 {
		return now.Add(limit), false
	}
	if by := sc.quietSince.Add(limit); now.Before(by) {
		return by, false
	}
	return time.Time{}, true
}

// start runs the handler for request id, or answers busy at once when the
// connection's handlers are all taken or its payload would exceed a byte
// budget (rather than stop reading, which would also hide cancel frames).
func (sc *serverConn) start(id uint64, timeout time.Duration, payload []byte) error {
	sc.mu.Lock()
	sc.quietSince = time.Now()
	if _, dup := sc.active[id]; dup {
		sc.mu.Unlock()
		return fmt.Errorf("%w: request ID %d already in flight", ErrProtocol, id)
	}
	select {
	case sc.slots <- struct{}{}:
	default:
		sc.mu.Unlock()
		sc.t.st.requestsBusy.Add(1)
		return sc.send(sc.ctx, encodeFrame(kindBusy, id, nil))
	}
	if !sc.charge(len(payload)) {
		<-sc.slots
		sc.mu.Unlock()
		sc.t.st.requestsOverBudget.Add(1)
		return sc.send(sc.ctx, encodeFrame(kindBusy, id, nil))
	}
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(sc.ctx, timeout)
	} else {
		ctx, cancel = context.WithCancel(sc.ctx)
	}
	r := &running{cancel: cancel}
	sc.active[id] = r
	sc.mu.Unlock()
	sc.t.spawnChild(func() { sc.handle(ctx, r, id, payload) })
	return nil
}

// charge takes n payload bytes from the connection's budget and the
// Transport's, or neither if either would be exceeded. sc.mu is held.
func (sc *serverConn) charge(n int) bool {
	if sc.bytes+n > sc.t.cfg.MaxInFlightBytesPerConn {
		return false
	}
	limit, held := int64(sc.t.cfg.MaxInFlightBytes), &sc.t.st.inFlightBytes
	for {
		cur := held.Load()
		if cur+int64(n) > limit {
			return false
		}
		if held.CompareAndSwap(cur, cur+int64(n)) {
			sc.bytes += n
			return true
		}
	}
}

// uncharge returns what charge took. sc.mu is held.
func (sc *serverConn) uncharge(n int) {
	sc.bytes -= n
	sc.t.st.inFlightBytes.Add(-int64(n))
}

// cancel ends a running request's ctx; its reply will not be sent.
func (sc *serverConn) cancel(id uint64) {
	sc.mu.Lock()
	sc.quietSince = time.Now()
	r, ok := sc.active[id]
	delete(sc.active, id)
	sc.mu.Unlock()
	if ok {
		r.cancel()
		sc.t.st.requestsCanceled.Add(1)
	}
}

// running is one request in its handler. Its identity, not its ID, says
// whether it is still awaited: a caller may reuse the ID of a request it
// cancelled before that handler returns.
type running struct {
	cancel context.CancelFunc
}

func (sc *serverConn) handle(ctx context.Context, r *running, id uint64, payload []byte) {
	defer r.cancel()
	var (
		reply []byte
		err   = errNoHandler
	)
	if h := sc.t.cfg.Handler; h != nil {
		reply, err = h.ServeRPC(ctx, payload)
	}

	sc.mu.Lock()
	live := sc.active[id] == r
	if live {
		delete(sc.active, id)
		sc.quietSince = time.Now()
	}
	sc.uncharge(len(payload))
	sc.mu.Unlock()
	// Free the slot before the reply leaves: a caller that has its reply
	// may send the next request at once and must not find it taken.
	<-sc.slots
	switch {
	case !live, sc.ctx.Err() != nil:
		return // the caller gave up, or the connection is going away
	case err != nil && ctx.Err() != nil:
		// The caller's propagated deadline passed: its own ctx reports
		// that, so do not race it with a remote copy of the same news.
		sc.t.st.requestsCanceled.Add(1)
		return
	}
	sc.t.st.requestsServed.Add(1)

	maxBody := sc.t.cfg.MaxFrameSize - frameMinLen
	var f []byte
	switch {
	case err != nil:
		msg := err.Error()
		if len(msg) > maxBody {
			msg = msg[:maxBody]
		}
		f = encodeFrame(kindError, id, []byte(msg))
	case len(reply) > maxBody:
		sc.t.log.Warn("reply over MaxFrameSize not sent", "remote_addr", sc.c.RemoteAddr().String(),
			"reply_len", len(reply), "max_frame_size", sc.t.cfg.MaxFrameSize)
		f = encodeFrame(kindTooLarge, id, fmt.Appendf(nil, "reply of %d bytes, at most %d", len(reply), maxBody))
	default:
		f = encodeFrame(kindResponse, id, reply)
	}
	_ = sc.send(context.Background(), f) // fails only if the connection failed
}
