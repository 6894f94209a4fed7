package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
)

const (
	wireBufSize  = 32 << 10 // read and write buffer per RPC connection
	sendQueueLen = 256      // frames queued for the writer goroutine
)

// wire is the framed I/O of one RPC connection, shared by the client and
// server sides: the owner's goroutine reads (read), one writer goroutine
// (writeLoop) drains sendq and coalesces queued frames into one write.
type wire struct {
	t     *Transport
	c     *conn
	br    *bufio.Reader
	sendq chan []byte
	done  chan struct{} // closed once the wire has failed
	once  sync.Once
	cause error // why it failed; written before done closes

	// inFlight counts the requests in progress on this connection (calls
	// awaiting replies, or running handlers): the writer's hint that more
	// frames are coming.
	inFlight func() int

	rdl time.Time // the read deadline set last (the reader's own)
}

func newWire(t *Transport, c *conn) *wire {
	return &wire{
		t:     t,
		c:     c,
		br:    bufio.NewReaderSize(c, wireBufSize),
		sendq: make(chan []byte, sendQueueLen),
		done:  make(chan struct{}),
	}
}

// fail breaks the wire once: records why, wakes everyone waiting on done
// and closes the connection (so the reader stops too).
func (w *wire) fail(err error) {
	w.once.Do(func() {
		w.cause = err
		close(w.done)
		_ = w.c.Close()
	})
}

func (w *wire) broken() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// send queues a whole frame for the writer. It returns the wire's failure
// if it breaks first, or ctx's error if ctx ends first.
func (w *wire) send(ctx context.Context, f []byte) error {
	select {
	case w.sendq <- f:
		return nil
	case <-w.done:
		return w.cause
	case <-ctx.Done():
		return ctx.Err()
	}
}

// trySend queues f if there is room right now (best effort).
func (w *wire) trySend(f []byte) {
	select {
	case w.sendq <- f:
	default:
	}
}

func (w *wire) writeLoop() {
	bw := bufio.NewWriterSize(w.c, wireBufSize)
	for {
		var f []byte
		select {
		case f = <-w.sendq:
		case <-w.done:
			return
		}
		if err := w.writeBatch(bw, f); err != nil {
			if isTimeout(err) && !w.broken() {
				w.t.st.ioTimeouts.Add(1)
				w.t.log.Warn("connection closed: write stalled for IOTimeout", "remote_addr", w.c.RemoteAddr().String())
			}
			w.fail(fmt.Errorf("write: %w", err))
			return
		}
	}
}

// writeBatch writes f and whatever else is queued, then flushes: concurrent
// callers share one syscall. When more frames are in the making (calls or
// handlers in flight beyond those written), it yields once before flushing
// so they can join: fewer syscalls under load, no added latency for a lone
// caller. Each frame must be written within IOTimeout.
func (w *wire) writeBatch(bw *bufio.Writer, f []byte) error {
	written, yielded := 0, false
	for {
		if err := w.c.SetWriteDeadline(time.Now().Add(w.t.cfg.IOTimeout)); err != nil {
			return err
		}
		if _, err := bw.Write(f); err != nil {
			return err
		}
		written++
		select {
		case f = <-w.sendq:
			continue
		default:
		}
		if !yielded && w.inFlight != nil && w.inFlight() > written {
			yielded = true
			runtime.Gosched()
			select {
			case f = <-w.sendq:
				continue
			default:
			}
		}
		return bw.Flush()
	}
}

var (
	// errIdle: the connection has been quiet for its idle limit and was
	// taken out of use (internal: a server counts it, Call redials).
	errIdle = errors.New("transport: connection idle")
	// errWaitEnded: no frame began before the wait's deadline (internal).
	errWaitEnded = errors.New("transport: wait for a frame ended")
)

// idleCheck reports whether the connection is idle at now (and if so
// takes it out of use), or else when to look again.
type idleCheck func(now time.Time) (next time.Time, idle bool)

// next returns the next frame, or errIdle once idle says so. While no
// frame has begun, the reader waits until the time idle gave, then asks
// again.
func (w *wire) next(idle idleCheck) (frame, error) {
	for {
		now := time.Now()
		by, expired := idle(now)
		if expired {
			return frame{}, errIdle
		}
		f, err := w.read(now, by)
		if !errors.Is(err, errWaitEnded) {
			return f, err
		}
	}
}

// read returns the next frame, or errWaitEnded if none has begun by the
// time by (or before: see waitUntil). Once a frame has begun to arrive,
// the rest must arrive within IOTimeout (unless it is already buffered).
func (w *wire) read(now, by time.Time) (frame, error) {
	if err := w.waitUntil(now, by); err != nil {
		return frame{}, err
	}
	if _, err := w.br.Peek(1); err != nil {
		if isTimeout(err) {
			return frame{}, errWaitEnded
		}
		return frame{}, err
	}
	if n := frameLenBuffered(w.br); n < 0 || w.br.Buffered() < n {
		w.rdl = time.Now().Add(w.t.cfg.IOTimeout)
		if err := w.c.SetReadDeadline(w.rdl); err != nil {
			return frame{}, err
		}
	}
	return readFrame(w.br, w.t.cfg.MaxFrameSize)
}

// waitUntil makes by the read deadline, unless the one set already comes
// no later and has not passed: that one then ends the wait early and next
// looks again. The time next gives only moves forward while frames
// arrive, so this resets the deadline about once per wait rather than
// once per frame.
func (w *wire) waitUntil(now, by time.Time) error {
	if !w.rdl.IsZero() && w.rdl.After(now) && !w.rdl.After(by) {
		return nil
	}
	w.rdl = by
	return w.c.SetReadDeadline(by)
}

// readFailed counts a bad peer's frame (before closing, so a peer that sees
// the close also sees the count), logs and fails the wire.
func (w *wire) readFailed(err error, side string) {
	remote := w.c.RemoteAddr().String()
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		w.t.st.framesRejected.Add(1)
		w.t.log.Warn("connection closed: frame over MaxFrameSize", "side", side, "remote_addr", remote, "error", err)
	case errors.Is(err, ErrProtocol):
		w.t.st.protocolErrors.Add(1)
		w.t.log.Warn("connection closed: protocol violation", "side", side, "remote_addr", remote, "error", err)
	case w.broken():
		// Closed on purpose (Close, a write failure): nothing new to say.
	case errors.Is(err, errIdle):
		w.t.log.Debug("connection closed: idle", "side", side, "remote_addr", remote)
	case isTimeout(err):
		w.t.st.ioTimeouts.Add(1)
		w.t.log.Warn("connection closed: frame not finished within IOTimeout", "side", side, "remote_addr", remote)
	default:
		w.t.log.Debug("connection ended", "side", side, "remote_addr", remote, "error", err)
	}
	w.fail(err)
}
