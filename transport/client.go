package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Call sends payload to the Handler of the node at addr and returns its
// reply. Many calls share each pooled connection concurrently.
//
// The call ends when the reply arrives, ctx ends (the error then satisfies
// errors.Is(err, ctx.Err()); the remote handler's ctx is cancelled and a
// late reply is dropped), or the connection fails. Errors: a *RemoteError
// from the handler; ErrFrameTooLarge if payload exceeds MaxFrameSize -
// FrameOverhead (nothing sent) or the reply exceeds the cap; ErrConnLost,
// ErrUnreachable or ErrBusy, which are Retryable; ErrClosed. Call does not
// retain payload.
func (t *Transport) Call(ctx context.Context, addr string, payload []byte) ([]byte, error) {
	if maxPayload := t.cfg.MaxFrameSize - FrameOverhead; len(payload) > maxPayload {
		return nil, fmt.Errorf("%w: payload of %d bytes, at most %d", ErrFrameTooLarge, len(payload), maxPayload)
	}
	for {
		if ctx.Err() != nil {
			return nil, ctxErr(ctx, addr)
		}
		c, err := t.getConn(ctx, addr)
		if err != nil {
			return nil, err
		}
		reply, err := c.call(ctx, payload)
		if errors.Is(err, errIdle) {
			continue // retired before anything was sent: redial
		}
		return reply, err
	}
}

// ctxErr wraps ctx's error. A deadline that has passed before ctx noticed
// still reads as DeadlineExceeded.
func ctxErr(ctx context.Context, addr string) error {
	err := ctx.Err()
	if err == nil {
		err = context.DeadlineExceeded
	}
	return fmt.Errorf("transport: call %s: %w", addr, err)
}

// peer is Call's pool for one address: ConnsPerPeer slots used round robin.
type peer struct {
	next  atomic.Uint32
	mu    sync.Mutex
	slots []slot
}

type slot struct {
	conn *clientConn
	dial *dialOp // the dial in progress, shared by every caller of the slot
}

type dialOp struct {
	done chan struct{}
	conn *clientConn
	err  error
}

func (p *peer) clear(i int, c *clientConn) {
	p.mu.Lock()
	if p.slots[i].conn == c {
		p.slots[i].conn = nil
	}
	p.mu.Unlock()
}

func (t *Transport) peer(addr string) (*peer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	p := t.peers[addr]
	if p == nil {
		p = &peer{slots: make([]slot, t.cfg.ConnsPerPeer)}
		t.peers[addr] = p
	}
	return p, nil
}

// getConn returns a live pooled connection to addr, dialling one if the
// chosen slot is empty or broken.
func (t *Transport) getConn(ctx context.Context, addr string) (*clientConn, error) {
	p, err := t.peer(addr)
	if err != nil {
		return nil, err
	}
	i := int(p.next.Add(1) % uint32(len(p.slots)))
	p.mu.Lock()
	s := &p.slots[i]
	if s.conn != nil && !s.conn.broken() {
		c := s.conn
		p.mu.Unlock()
		return c, nil
	}
	s.conn = nil
	if s.dial == nil {
		d := &dialOp{done: make(chan struct{})}
		if !t.spawn(func() { t.dialSlot(addr, p, i, d) }) {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		s.dial = d
	}
	d := s.dial
	p.mu.Unlock()

	select {
	case <-d.done:
		return d.conn, d.err
	case <-ctx.Done():
		return nil, ctxErr(ctx, addr)
	}
}

// dialSlot fills slot i of p. It runs in its own goroutine, bounded by
// DialTimeout and Close rather than by any one caller's ctx, so callers
// can give up while the dial completes for the next call.
func (t *Transport) dialSlot(addr string, p *peer, i int, d *dialOp) {
	t.st.dials.Add(1)
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.DialTimeout)
	nc, err := t.dial(ctx, addr, muxRPC)
	cancel()
	var c *clientConn
	if err == nil {
		cc := newClientConn(t, nc, addr)
		cc.onExit = func() { p.clear(i, cc) }
		if err = t.startClientConn(cc); err == nil {
			c = cc
		}
	}
	if err != nil {
		if errors.Is(err, ErrClosed) || t.ctx.Err() != nil {
			err = ErrClosed
		} else {
			t.st.dialFailures.Add(1)
			t.log.Debug("dial failed", "addr", addr, "error", err)
			err = fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, err)
		}
	}
	p.mu.Lock()
	p.slots[i].dial = nil
	if c != nil {
		p.slots[i].conn = c
	}
	p.mu.Unlock()
	d.conn, d.err = c, err
	close(d.done)
}

// result is what a pending call receives: a frame, or the connection's
// failure.
type result struct {
	f   frame
	err error
}

// clientConn is one pooled connection: any number of calls in flight,
// matched to replies by request ID.
type clientConn struct {
	*wire
	addr   string
	nextID atomic.Uint64
	onExit func() // run when the connection is done (leaves the pool)

	calls atomic.Int64 // calls in progress

	mu      sync.Mutex
	pending map[uint64]chan result // nil once the connection has failed or retired
	// quietSince is when the last call registered or got its reply: the
	// start of the idle time once pending is empty.
	quietSince time.Time
}

func newClientConn(t *Transport, c *conn, addr string) *clientConn {
	cc := &clientConn{wire: newWire(t, c), addr: addr, pending: make(map[uint64]chan result), quietSince: time.Now()}
	cc.inFlight = func() int { return int(cc.calls.Load()) }
	return cc
}

// idle is the client's idleCheck: retire the connection once no call has
// been pending for IdleTimeout/2, half the server's limit, so that a call
// never meets a connection the server is closing as idle. Retiring and
// registering a call are exclusive under mu: a call either registered
// first, or finds pending nil and redials without having sent anything.
func (c *clientConn) idle(now time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := c.t.cfg.IdleTimeout / 2
	if len(c.pending) > 0 {
		return now.Add(limit), false
	}
	if by := c.quietSince.Add(limit); now.Before(by) {
		return by, false
	}
	c.pending = nil
	return time.Time{}, true
}

// startClientConn starts c's reader and writer goroutines.
func (t *Transport) startClientConn(c *clientConn) error {
	if !t.track(c, func() { c.fail(ErrClosed) }) {
		_ = c.c.Close()
		return ErrClosed
	}
	t.st.clientConns.Add(1)
	started := t.spawn(func() {
		t.spawnChild(c.writeLoop)
		c.readLoop()
	})
	if !started {
		c.fail(ErrClosed)
		c.exit()
		return ErrClosed
	}
	return nil
}

func (c *clientConn) readLoop() {
	for {
		f, err := c.next(c.idle)
		if err == nil {
			switch f.kind {
			case kindResponse, kindError, kindBusy, kindTooLarge:
				c.deliver(f)
				continue
			default:
				err = fmt.Errorf("%w: frame kind %d sent to a client", ErrProtocol, f.kind)
			}
		}
		if errors.Is(err, errIdle) {
			c.t.st.connsRetired.Add(1)
		}
		c.readFailed(err, "client")
		break
	}
	c.exit()
}

// exit runs once the connection has failed: leave the pool first (so a
// caller that sees the failure redials on its next call), then fail every
// pending call.
func (c *clientConn) exit() {
	if c.onExit != nil {
		c.onExit()
	}
	c.t.untrack(c)
	c.t.st.clientConns.Add(-1)
	if !errors.Is(c.cause, ErrClosed) && !errors.Is(c.cause, errIdle) {
		c.t.st.connsLost.Add(1)
	}
	c.mu.Lock()
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	err := c.lostErr()
	for _, ch := range pending {
		ch <- result{err: err}
	}
}

// lostErr is what calls on a failed connection return: errIdle (internal,
// Call redials) for a retired one.
func (c *clientConn) lostErr() error {
	switch {
	case errors.Is(c.cause, ErrClosed):
		return ErrClosed
	case errors.Is(c.cause, errIdle):
		return errIdle
	}
	return fmt.Errorf("%w: %s: %w", ErrConnLost, c.addr, c.cause)
}

func (c *clientConn) deliver(f frame) {
	c.mu.Lock()
	ch, ok := c.pending[f.id]
	delete(c.pending, f.id)
	c.quietSince = time.Now()
	c.mu.Unlock()
	if !ok {
		c.t.st.lateResponses.Add(1)
		return
	}
	ch <- result{f: f} // buffered: never blocks the reader
}

// forget removes a pending call; false if the reader (or the failure)
// already took it.
func (c *clientConn) forget(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pending[id]; !ok {
		return false
	}
	delete(c.pending, id)
	return true
}

func (c *clientConn) call(ctx context.Context, payload []byte) ([]byte, error) {
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return nil, ctxErr(ctx, c.addr)
		}
	}
	id := c.nextID.Add(1)
	ch := make(chan result, 1)
	c.mu.Lock()
	if c.pending == nil {
		c.mu.Unlock()
		<-c.done
		return nil, c.lostErr()
	}
	c.pending[id] = ch
	c.quietSince = time.Now()
	c.mu.Unlock()
	c.calls.Add(1)
	c.t.st.pendingCalls.Add(1)
	defer func() {
		c.calls.Add(-1)
		c.t.st.pendingCalls.Add(-1)
	}()

	if err := c.send(ctx, encodeRequest(id, timeout, payload)); err != nil {
		c.forget(id)
		if ctx.Err() != nil {
			return nil, ctxErr(ctx, c.addr)
		}
		return nil, c.lostErr()
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return c.reply(r.f)
	case <-ctx.Done():
		if c.forget(id) {
			c.trySend(encodeFrame(kindCancel, id, nil))
		}
		// else the reply or the failure raced ctx into ch: dropped.
		return nil, ctxErr(ctx, c.addr)
	}
}

func (c *clientConn) reply(f frame) ([]byte, error) {
	switch f.kind {
	case kindResponse:
		return f.body, nil
	case kindError:
		return nil, &RemoteError{Message: string(f.body)}
	case kindBusy:
		return nil, fmt.Errorf("%w: %s", ErrBusy, c.addr)
	default: // kindTooLarge
		return nil, fmt.Errorf("%w: reply from %s: %s", ErrFrameTooLarge, c.addr, f.body)
	}
}
