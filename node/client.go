package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// cleanupTimeout bounds the commands a client makes after its caller gave
// up (closing a session; one attempt of a background clean-up), and how
// long an Acquire waits for the clean-up of its claim.
const cleanupTimeout = 5 * time.Second

// client is one lock.Locker: a session on the node, the waiters of its
// blocked Acquire calls and its granted leases. Applied events reach it
// through handle, in the FSM goroutine.
type client struct {
	n *Node

	mu       sync.Mutex
	sess     uint64 // current session
	ttl      time.Duration
	seq      uint64
	inflight map[uint64]struct{}     // seqs proposed and not yet answered
	shrunk   chan struct{}           // closed and replaced when inflight shrinks
	waiters  map[uint64]*waiter      // by seq of the Acquire
	grants   map[uint64]*grantWaiter // by seq of an Acquire for a caller outside the node (keyed.go)
	leases   map[leaseKey]*lease
	closed   bool
	// ready is open while the current session is believed alive.
	ready *gate
	// reopenErr is why the last attempt to open a session failed (nil once
	// one opened): the cause reported by calls that wait for a session.
	reopenErr error
	// lostSessions are earlier sessions this client declared lost.
	lostSessions map[uint64]bool
	// cleanups are the background clean-ups of given-up claims
	// (cleanup.go); they end when c.ctx does, and markClosed waits for
	// them. Added to under mu while !closed only.
	cleanups sync.WaitGroup

	// renew sends one keep-alive for a session and reports whether the
	// leader acknowledged it.
	renew func(session uint64, timeout time.Duration) bool

	lost    chan struct{}   // buffered 1: the store expired the session
	ctx     context.Context // cancelled when the keep-alive must stop
	cancel  context.CancelFunc
	stop    <-chan struct{} // ctx.Done()
	stopped chan struct{}
	bg      sync.WaitGroup // background requests of leases (lease.go); markClosed waits
}

type leaseKey struct {
	name  string
	token uint64
}

var (
	_ lock.Locker       = (*client)(nil)
	_ lock.Lister       = (*client)(nil)
	_ lock.Revoker      = (*client)(nil)
	_ lock.Adopter      = (*client)(nil)
	_ lock.TokenFloorer = (*client)(nil)
)

func (n *Node) newClient(ctx context.Context) (*client, error) {
	c := &client{
		n:            n,
		ttl:          n.cfg.SessionTTL,
		inflight:     map[uint64]struct{}{},
		waiters:      map[uint64]*waiter{},
		grants:       map[uint64]*grantWaiter{},
		leases:       map[leaseKey]*lease{},
		lostSessions: map[uint64]bool{},
		shrunk:       make(chan struct{}),
		ready:        newGate(),
		lost:         make(chan struct{}, 1),
		stopped:      make(chan struct{}),
		renew:        n.renewSession,
	}
	c.ctx, c.cancel = context.WithCancel(n.ctx)
	c.stop = c.ctx.Done()
	// The client is registered with the node before its session commits,
	// so a node that stops meanwhile abandons it (markClosed): that
	// cancels c.ctx, which must end the open too, and waits for c.stopped,
	// which must close although no keep-alive will run.
	octx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(c.ctx, stop)()
	sent := time.Now()
	if err := c.openSession(octx); err != nil {
		c.cancel()
		close(c.stopped)
		if c.isClosed() {
			return nil, lock.ErrClosed
		}
		return nil, err
	}
	go c.keepAlive(sent)
	n.metrics.Sessions(+1)
	return c, nil
}

// request proposes a command of this client's current session with a fresh
// sequence number.
func (c *client) request(ctx context.Context, build func(req *fsmpb.Request) *fsmpb.Command) (*fsmpb.Result, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, lock.ErrClosed
	}
	req, err := c.nextRequest(ctx)
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	res, err := c.n.propose(ctx, build(req))
	c.endRequest(req.Seq)
	return res, err
}

// maxWindow bounds how far a client's newest sequence number may run ahead
// of its oldest unanswered one. The state machine caches at most
// fsm.MaxCachedResults results per session and forgets the lowest beyond
// that; keeping the window below it means a slow request is never
// forgotten before it is applied.
const maxWindow = fsm.MaxCachedResults / 2

// nextRequest allocates a sequence number, waiting while the window is
// full, until ctx ends or the client closes; c.mu held (released while it
// waits).
func (c *client) nextRequest(ctx context.Context) (*fsmpb.Request, error) {
	for {
		if c.closed {
			return nil, lock.ErrClosed
		}
		oldest := c.seq + 1
		for s := range c.inflight {
			oldest = min(oldest, s)
		}
		if c.seq+1-oldest < maxWindow {
			c.seq++
			c.inflight[c.seq] = struct{}{}
			return &fsmpb.Request{Session: c.sess, Seq: c.seq, AckedBelow: oldest}, nil
		}
		shrunk := c.shrunk
		c.mu.Unlock()
		select {
		case <-shrunk:
		case <-c.stop: // closed: the loop answers ErrClosed
		case <-ctx.Done():
			c.mu.Lock()
			return nil, fmt.Errorf("node: waiting for the request window: %w", ctx.Err())
		}
		c.mu.Lock()
	}
}

// endRequest takes seq out of the window: its request was answered or
// given up.
func (c *client) endRequest(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, seq)
	close(c.shrunk)
	c.shrunk = make(chan struct{})
}

func (c *client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Close closes the session: the store ends every lease of this client and
// withdraws its queued claims in one entry. Blocked Acquire calls return
// ErrClosed. Without a quorum it gives up after cleanupTimeout; the
// session then expires in the store.
func (c *client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	return c.closeWithin(ctx)
}

// closeWithin is Close bounded by ctx.
func (c *client) closeWithin(ctx context.Context) error {
	sess, seq, ok := c.markClosed()
	if !ok {
		return nil
	}
	// End the leases here first: closing the session may take until
	// cleanupTimeout (no quorum), and the keep-alive that backed them has
	// stopped, so the holder must stop trusting them now (I3).
	c.endLeases(lock.ErrReleased)
	var err error
	if sess != 0 {
		if c.cancelOwnedGrants(ctx, sess) {
			// The close takes a seq above the cancels': the store forgets
			// the lowest seqs first, and a close below them could be
			// answered FORGOTTEN and not run.
			c.mu.Lock()
			c.seq++
			seq = c.seq
			c.mu.Unlock()
		}
		_, err = c.n.propose(ctx, &fsmpb.Command{Op: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{
			Req: &fsmpb.Request{Session: sess, Seq: seq},
		}}})
	}
	c.failGrants(lock.ErrClosed)
	c.n.unregister(c)
	if errors.Is(err, lock.ErrClosed) {
		err = nil
	}
	return err
}

// abandon stops the client without telling the store, as a crash would.
func (c *client) abandon() {
	if _, _, ok := c.markClosed(); ok {
		c.failGrants(lock.ErrClosed)
		c.endLeases(fmt.Errorf("%w: node stopped", lock.ErrLost))
		c.n.unregister(c)
	}
}

// markClosed stops new calls, fails waiters and stops the keep-alive. It
// returns the session and a fresh sequence number for closing it.
func (c *client) markClosed() (sess, seq uint64, ok bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, 0, false
	}
	c.closed = true
	for seq, w := range c.waiters {
		w.fail(lock.ErrClosed)
		delete(c.waiters, seq)
	}
	for seq, w := range c.grants {
		if !w.owned { // a client session's claim stays the client's (DESIGN.md)
			w.fail(lock.ErrClosed)
			delete(c.grants, seq)
		}
	}
	c.seq++
	sess, seq = c.sess, c.seq
	c.mu.Unlock()
	c.ready.set(true) // let calls waiting for a session through, to ErrClosed
	c.n.metrics.Sessions(-1)
	c.cancel()
	<-c.stopped
	c.bg.Wait()
	c.cleanups.Wait()
	return sess, seq, true
}

// endLeases ends every lease the client still holds.
func (c *client) endLeases(why error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.leases {
		l.end(why)
	}
}
