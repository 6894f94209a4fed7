package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
)

// Locker is a lock.Locker over one ZooKeeper session. All methods are safe
// for concurrent use.
type Locker struct {
	cfg        Config
	id         string // the holder ID in this Locker's node data (DESIGN.md)
	conn       *zk.Conn
	ownConn    bool
	log        *slog.Logger
	sink       metrics.Sink // never nil
	negotiated atomic.Int64 // negotiated session timeout (ns); 0: unknown

	base   context.Context // cancelled, with cause lock.ErrClosed, by Close
	cancel context.CancelCauseFunc
	// stopped ends when Shutdown has finished its own cleanup, or when its
	// ctx ends: clean-up deletes give up then.
	stopped  context.Context
	stop     context.CancelFunc
	haltOnce sync.Once // Shutdown's connection close (shutdown.go)

	kickProbe chan struct{}
	kickWatch chan struct{}

	mu     sync.Mutex
	closed bool
	// untracked: Shutdown has set the session gauge back to 0; a late
	// reply must not track a session again.
	untracked bool
	sessID    int64     // the session the deadline refers to; 0: none yet
	deadline  time.Time // session leases of sessID end at this time
	fresh     chan struct{}
	leases    map[*lease]struct{}
	orphans   map[string]orphan
	watches   map[watchKey]<-chan zk.Event // armed watches by watched path and kind (watch.go)
	// lastAck is the send time of the last write the store acknowledged
	// (any session); lastCause the last connection-level failure. They say
	// whether a call that ran out of time met an unreachable store (R5).
	lastAck   time.Time
	lastCause error

	ops   sync.WaitGroup // public calls in progress
	calls sync.WaitGroup // goroutines of store calls
	// running counts the goroutines of store calls too; unlike calls it
	// can be read at any time (tests wait for abandoned calls with it).
	running atomic.Int64
	// seatReads counts observers' reads of an election (tests check that
	// an observer waits rather than polls).
	seatReads atomic.Int64
	// slotReads counts permit claims' reads of the records of the
	// children ahead (tests check when they are made, slot.go).
	slotReads atomic.Int64
	hooks     hookSet        // tests only (hooks.go)
	bg        sync.WaitGroup // prober and watchdog
}

var (
	_ lock.Locker  = (*Locker)(nil)
	_ lock.Lister  = (*Locker)(nil)
	_ lock.Revoker = (*Locker)(nil)
	_ lock.Adopter = (*Locker)(nil)

	_ lock.TokenFloorer = (*Locker)(nil)
	_ lock.Elector      = (*Locker)(nil)
)

// New validates cfg and returns a Locker. With Servers it connects (in the
// background: New does not wait for the first session); with Conn it uses
// the given connection.
func New(cfg Config) (*Locker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	id, err := newGUID()
	if err != nil {
		return nil, err
	}
	l := &Locker{
		cfg:       cfg,
		id:        id,
		log:       cfg.Logger,
		sink:      metrics.OrNop(cfg.Metrics),
		kickProbe: make(chan struct{}, 1),
		kickWatch: make(chan struct{}, 1),
		fresh:     make(chan struct{}),
		leases:    make(map[*lease]struct{}),
		orphans:   make(map[string]orphan),
		watches:   make(map[watchKey]<-chan zk.Event),
	}
	l.base, l.cancel = context.WithCancelCause(context.Background())
	l.stopped, l.stop = context.WithCancel(context.Background())
	if cfg.Conn != nil {
		l.conn = cfg.Conn
	} else {
		conn, _, err := zk.Connect(cfg.Servers, cfg.SessionTimeout,
			zk.WithLogger(zkLogger{log: l.log, negotiated: &l.negotiated}),
			zk.WithLogInfo(true),
			zk.WithEventCallback(l.onEvent))
		if err != nil {
			l.cancel(lock.ErrClosed)
			l.stop()
			return nil, fmt.Errorf("zookeeper: connect: %w", err)
		}
		l.conn, l.ownConn = conn, true
	}
	l.bg.Add(2)
	go l.prober()
	go l.watchdog()
	return l, nil
}

// begin registers a public call; the returned ctx also ends when the Locker
// is closed.
func (l *Locker) begin(ctx context.Context) (context.Context, func(), error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, nil, lock.ErrClosed
	}
	l.ops.Add(1)
	l.mu.Unlock()
	opCtx, cancel := context.WithCancelCause(context.WithValue(ctx, traceKey{}, &trace{start: time.Now()}))
	stop := context.AfterFunc(l.base, func() { cancel(lock.ErrClosed) })
	return opCtx, func() {
		stop()
		cancel(nil)
		l.ops.Done()
	}, nil
}

// fail maps err of a call made under opCtx (from begin), for the caller,
// whose ctx is ctx: ErrClosed; the caller's ctx error, together with
// ErrNoQuorum unless the call's trace shows the store reachable (noQuorum);
// ErrNoQuorum for a connection-level failure; or err.
func (l *Locker) fail(ctx, opCtx context.Context, what string, err error) error {
	switch {
	case ctx.Err() != nil:
		if nq := l.noQuorum(traceOf(opCtx)); nq != nil {
			return fmt.Errorf("zookeeper: %s: %w: %w", what, ctxError(ctx), nq)
		}
		return fmt.Errorf("zookeeper: %s: %w", what, ctxError(ctx))
	case l.base.Err() != nil || errors.Is(err, zk.ErrClosing):
		return fmt.Errorf("zookeeper: %s: %w", what, lock.ErrClosed)
	case retryable(err):
		return fmt.Errorf("zookeeper: %s: %w: %w", what, lock.ErrNoQuorum, err)
	}
	return fmt.Errorf("zookeeper: %s: %w", what, err)
}

// noQuorum says whether a call, traced by tr, that ran out of time met an
// unreachable store (R5). It is nil — the store was reachable, or never
// asked — if the call sent nothing; or if the session is confirmed now and
// either a write of this Locker sent since the call began was acknowledged
// (a waiter queued behind a holder, say) or the store answered every
// request of the call. Otherwise it is ErrNoQuorum with the last
// connection-level failure seen.
func (l *Locker) noQuorum(tr *trace) error {
	if tr != nil && !tr.sent.Load() {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	confirmed := l.sessID != 0 && time.Now().Before(l.deadline)
	if confirmed && tr != nil && (!l.lastAck.Before(tr.start) || !tr.unanswered.Load()) {
		return nil
	}
	switch {
	case l.lastCause != nil:
		return fmt.Errorf("%w: last failure: %w", lock.ErrNoQuorum, l.lastCause)
	case l.lastAck.IsZero():
		return fmt.Errorf("%w: no write acknowledged yet", lock.ErrNoQuorum)
	}
	return fmt.Errorf("%w: no write acknowledged since %v ago", lock.ErrNoQuorum, time.Since(l.lastAck).Round(time.Millisecond))
}

// trace records what one public call asked of the store, for noQuorum;
// begin puts it in the call's ctx, and call fills it in.
type trace struct {
	start time.Time // when the call began
	// sent: a request of the call went out; unanswered: one of them got no
	// answer (a connection-level failure, or ctx ended while it waited).
	sent, unanswered atomic.Bool
}

type traceKey struct{}

// traceOf is the trace of the public call ctx belongs to, or nil.
func traceOf(ctx context.Context) *trace {
	tr, _ := ctx.Value(traceKey{}).(*trace)
	return tr
}

// dir is the directory of name's claims.
func (l *Locker) dir(name string) string { return l.cfg.Root + "/" + escapeName(name) }

// cleanupTimeout bounds the deletes made after a caller's ctx has ended.
func (l *Locker) cleanupTimeout() time.Duration {
	return min(l.sessionTimeout(), 5*time.Second)
}
