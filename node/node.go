package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
	"github.com/quorumlock/quorumlock/transport"
)

// Node is one replica of the lock state machine, embedded in the
// application. It implements lock.Locker through its default client; call
// NewLocker for more independent clients (sessions) on the same node.
type Node struct {
	cfg Config
	// commitMu is held for reading by every raft.Apply until its future
	// answers, and for writing around raft.Shutdown: Raft drops futures
	// that are in flight at Shutdown (see DESIGN.md, hashicorp/raft#498).
	commitMu sync.RWMutex
	log      *slog.Logger
	chatter  *chatter     // Raft's routine log lines (raftlog.go)
	metrics  metrics.Sink // Config.Metrics, or metrics.Nop
	isLeader atomic.Bool  // as last reported to metrics
	raft     *raft.Raft
	logs     raft.LogStore // raft's; read only by tests (export_test.go)
	// protocol is what this node announces and applies (fsm.Protocol);
	// needs is fsm.Needs. Both are fields so tests can play an older or
	// newer build (export_test.go).
	protocol   atomic.Int32
	needs      atomic.Pointer[func(*fsmpb.Command) int]
	peers      protocols             // leader: what each member announced (version.go)
	halted     atomic.Pointer[error] // why the bridge halted (version.go)
	bridge     *bridge
	observers  *observers // Observe calls, fed by the bridge (observe.go)
	exp        *expirer
	trans      *transport.Transport // nil for a single node without network
	heartbeats *heartbeatGuard      // nil for a single node without network
	addr       string               // this node's Raft address
	// started is closed once raft is set; RPCs that arrive before (the
	// transport serves as soon as it listens) are answered "not leader".
	started chan struct{}
	// existing is true when the stores held state at start: a restart,
	// which ignores Peers and Join.
	existing bool

	// wallSkew is added to the wall clock this node stamps commands with
	// and reads leader stamps against. Always 0 outside tests, which use
	// it to make the leader's clock jump.
	wallSkew atomic.Int64

	// closers release Raft's stores and transports after Shutdown.
	closers []func() error

	// snaps is Raft's snapshot store: Snapshot reads its newest (backup.go).
	snaps raft.SnapshotStore

	// leading is true while this node is the leader and has applied every
	// entry of earlier terms (barrier done): only then may it serve reads.
	leading *gate
	// leadTerm is the term whose barrier opened leading.
	leadTerm atomic.Uint64
	// leaderChanged is bumped whenever this node learns of a new leader (or
	// loses the one it knew): calls waiting for a leader retry at once.
	leaderChanged *signal
	// upgrade (buffered 1) wakes runUpgrades: this node may be able to
	// raise the committed protocol level.
	upgrade chan struct{}

	// mu guards the registry of clients (register, unregister and
	// dispatch in events.go; closeClients); see bridge.go for the order
	// of the node's mutexes.
	mu      sync.RWMutex
	clients map[uint64]*client // by session ID
	closed  bool               // closeClients ran: register refuses

	def      *client
	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	stop     <-chan struct{} // ctx.Done()
	wg       sync.WaitGroup
	closeErr error
	// sessionsErr: the first stop could not close every session
	// (errSessionsLeft); Shutdown returns it, Close logs it.
	sessionsErr error
	once        sync.Once
}

var (
	_ lock.Locker       = (*Node)(nil)
	_ lock.Lister       = (*Node)(nil)
	_ lock.Revoker      = (*Node)(nil)
	_ lock.Adopter      = (*Node)(nil)
	_ lock.TokenFloorer = (*Node)(nil)
)

// New starts a node and returns once it is ready to serve: a single node
// once it is the leader with its log applied; a cluster member once it
// knows a leader and has caught up with it (bounded by StartTimeout).
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger, // as given: the caller adds the node's ID if it wants it (Config.Logger)
		chatter: newChatter(),
		metrics: metrics.OrNop(cfg.Metrics),
		exp:     newExpirer(cfg.handoffGrace()),
		clients: map[uint64]*client{},
		leading: newGate(),
		started: make(chan struct{}),
		upgrade: make(chan struct{}, 1),

		leaderChanged: newSignal(),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.stop = n.ctx.Done()
	n.protocol.Store(fsm.Protocol)
	needs := fsm.Needs
	n.needs.Store(&needs)
	if p := cfg.played; p != nil { // tests only (export_test.go)
		n.protocol.Store(int32(p.protocol))
		n.needs.Store(&p.needs)
	}
	n.bridge = newBridge(n.dispatch, n.reconcile, n.halt)
	n.bridge.metrics = n.metrics
	n.observers = newObservers(n.wallNow)
	n.bridge.observed = n.observers
	fail := func(err error) (*Node, error) {
		_ = n.shutdown(context.Background(), false)
		return nil, err
	}
	if err := n.startRaft(); err != nil {
		return fail(err)
	}
	n.wg.Add(4)
	go n.watchLeadership()
	go n.watchLeader()
	go n.runExpiries()
	go n.runUpgrades()

	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	defer cancel()
	// A restart whose stores hold no configuration (it died after its
	// first term arrived, before any entry or snapshot did) joins again:
	// otherwise, with an identity, it would accept Raft from nobody.
	if cfg.Join != "" && (!n.existing || len(n.memberAddrs()) == 0) {
		if err := n.join(ctx); err != nil {
			return fail(err)
		}
	}
	if err := n.readBarrier(ctx); err != nil {
		if halt := n.haltErr(); halt != nil {
			return fail(fmt.Errorf("node: stopped while starting: %w", halt))
		}
		return fail(fmt.Errorf("node: not ready after %v: %w", cfg.StartTimeout, err))
	}
	n.bridge.goLive() // caught up: what applies from now on is new (DESIGN.md, "Time")
	n.metrics.Observe(n.observe)
	n.def, err = n.newClient(ctx)
	if err != nil {
		return fail(err)
	}
	return n, nil
}

// termBarrier commits an empty, ignorable command in the new term and
// waits until it is applied: then the state holds every entry of earlier
// terms. It is a command rather than raft's Barrier because raft hands
// neither its no-op nor barrier entries to the FSM, so the bridge's applied
// index would stop short of them and a read waiting for the commit index
// would wait for the next write.
func (n *Node) termBarrier() error {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.StartTimeout)
	defer cancel()
	_, _, err := n.proposeLocal(ctx, &fsmpb.Command{Ignorable: true})
	return err
}

// watchLeadership arms the expiry timers when this node becomes the leader
// (after a barrier, so the state holds every committed entry) and stops them
// when it is not.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case isLeader := <-n.raft.LeaderCh():
			n.onLeadership(isLeader, n.termBarrier)
		}
	}
}

// onLeadership handles one notification of LeaderCh. Raft keeps only the
// latest one in the channel, so a loss followed by a new win while this
// node was busy arrives as a single true: every notification therefore
// first stops leading (gate shut, timers stopped) before a win starts the
// new term's leadership. A win waits for the term's barrier, retried while
// this node still leads that term: with a failed barrier given up, the
// node would lead with its gate shut and no expiry timers until
// leadership moved.
func (n *Node) onLeadership(isLeader bool, barrier func() error) {
	if n.isLeader.Swap(isLeader) != isLeader {
		n.metrics.LeaderChanged(isLeader)
	}
	n.leading.set(false)
	n.exp.follow()
	if !isLeader {
		return
	}
	term := n.raft.CurrentTerm()
	backoff := leasecore.Backoff{Min: retryMin, Max: retryMax}
	for {
		err := barrier()
		if err == nil {
			break
		}
		if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
			n.log.Debug("barrier after election failed; no longer leading this term", "error", err)
			return // a later notification says what came next
		}
		n.log.Warn("barrier after election failed; retrying", "term", term, "error", err)
		if backoff.Wait(n.ctx) != nil {
			return
		}
	}
	n.bridge.read(n.exp.lead)
	n.raiseProtocol() // before serving: a single node is at this build's level when New returns
	n.leadTerm.Store(term)
	n.leading.set(true)
	n.log.Debug("leading: expiry timers armed", "term", term)
}

// leadsTerm reports whether this node is still the leader of the term
// whose barrier opened its gate: checked after VerifyLeader by reads and
// keep-alives, and before committing an expiry, so that nothing decided in
// an earlier term is answered or committed in a later one.
func (n *Node) leadsTerm() bool {
	return n.raft.State() == raft.Leader && n.raft.CurrentTerm() == n.leadTerm.Load()
}

// watchLeader bumps leaderChanged on every leader change Raft observes, so
// that a call held while no leader was known retries as soon as one is,
// instead of at its next backoff tick (up to retryMax later).
func (n *Node) watchLeader() {
	defer n.wg.Done()
	ch := make(chan raft.Observation, 8)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	var last raft.ServerID
	for {
		select {
		case <-n.stop:
			return
		case o := <-ch:
			n.leaderChanged.bump()
			if lo, ok := o.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" && lo.LeaderID != last {
				last = lo.LeaderID
				n.log.Info("leader changed", "leader", string(lo.LeaderID), "term", n.raft.CurrentTerm())
			}
		}
	}
}

// NewLocker returns a new client of this node with its own session: its
// leases and queued requests are independent of every other client's, and
// closing it ends only its own. The Node itself is such a client.
func (n *Node) NewLocker(ctx context.Context) (lock.Locker, error) {
	return n.newClient(ctx)
}

// Acquire implements lock.Locker with the node's default client.
func (n *Node) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return n.def.Acquire(ctx, name, opts...)
}

// TryAcquire implements lock.Locker with the node's default client.
func (n *Node) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return n.def.TryAcquire(ctx, name, opts...)
}

// Inspect implements lock.Locker. It is linearizable: it reflects every
// operation that completed before it was called.
func (n *Node) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	return n.def.Inspect(ctx, name, opts...)
}

// List implements lock.Lister with the node's default client.
func (n *Node) List(ctx context.Context, prefix string, opts ...lock.ListOption) (lock.Page, error) {
	return n.def.List(ctx, prefix, opts...)
}

// Revoke implements lock.Revoker with the node's default client.
func (n *Node) Revoke(ctx context.Context, name string, token uint64) error {
	return n.def.Revoke(ctx, name, token)
}

// Adopt implements lock.Adopter with the node's default client: the
// adopted lease is the default client's.
func (n *Node) Adopt(ctx context.Context, name string, token uint64) (lock.Lease, error) {
	return n.def.Adopt(ctx, name, token)
}

// FloorToken implements lock.TokenFloorer with the node's default client.
// It raises the tokens of every name, not only name's (DESIGN.md, "Token
// floors"): the store keeps one floor.
func (n *Node) FloorToken(ctx context.Context, name string, floor uint64) error {
	return n.def.FloorToken(ctx, name, floor)
}

// Elector is the node's default client as a lock.Elector. The Node itself
// is not one: its Leader method reports the Raft leader, not an
// election's. Every Locker of NewLocker is a lock.Elector too.
func (n *Node) Elector() lock.Elector { return n.def }

// AcquirePermit implements lock.Semaphores with the node's default client.
func (n *Node) AcquirePermit(ctx context.Context, name string, limit int, opts ...lock.Option) (lock.Permit, error) {
	return n.def.AcquirePermit(ctx, name, limit, opts...)
}

// TryAcquirePermit implements lock.Semaphores with the node's default client.
func (n *Node) TryAcquirePermit(ctx context.Context, name string, limit int, opts ...lock.Option) (lock.Permit, error) {
	return n.def.TryAcquirePermit(ctx, name, limit, opts...)
}

// AcquireRead implements lock.RWLockers with the node's default client.
func (n *Node) AcquireRead(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return n.def.AcquireRead(ctx, name, opts...)
}

// TryAcquireRead implements lock.RWLockers with the node's default client.
func (n *Node) TryAcquireRead(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return n.def.TryAcquireRead(ctx, name, opts...)
}

// AcquireWrite implements lock.RWLockers with the node's default client.
func (n *Node) AcquireWrite(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return n.def.AcquireWrite(ctx, name, opts...)
}

// TryAcquireWrite implements lock.RWLockers with the node's default client.
func (n *Node) TryAcquireWrite(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return n.def.TryAcquireWrite(ctx, name, opts...)
}

// Close is Shutdown bounded by 5 s (cleanupTimeout): what a node with a
// quorum needs to close its sessions, and what a node without one waits
// before it stops anyway. Sessions it could not close are logged at Warn
// (as by Shutdown) but not returned: the last nodes of a cluster that
// stops cannot close theirs, and that is no error of the Close. Use
// Shutdown to choose the bound and to have them returned.
func (n *Node) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_ = n.shutdown(ctx, true)
	return n.closeErr
}

// Shutdown stops the node gracefully within ctx: it ends every local
// lease (ErrReleased), closes the sessions of every client in the store
// (so their leases pass on at once), hands leadership over if it leads,
// then stops. When ctx ends first — typically without a quorum — it stops
// at once: the sessions it could not close expire in the store after their
// TTL, as a crashed process's would, and the error says so and wraps
// ctx's error. Either way the node is stopped when Shutdown returns.
// Shutdown, Close and Abort are idempotent: only the first one acts, and
// later calls return its result. Safe on a partially started node.
func (n *Node) Shutdown(ctx context.Context) error {
	_ = n.shutdown(ctx, true)
	return errors.Join(n.sessionsErr, n.closeErr)
}

// Abort stops the node at once, the way a killed process stops: no session
// is closed, no lease released and leadership is not handed over, so the
// cluster keeps this node's leases until its sessions expire. Local leases
// end with ErrLost. For processes that must stop immediately, and for
// tests that simulate crashes. Abort after Close (or Close after Abort)
// does nothing.
func (n *Node) Abort() error { return n.shutdown(context.Background(), false) }

// errSessionsLeft: Shutdown could not close every session in the store.
var errSessionsLeft = errors.New("node: shutdown: sessions not closed in the store")

// closeClients closes (graceful, within ctx) or abandons every client,
// and refuses new ones. It returns the error of the clients whose session
// could not be closed in time.
func (n *Node) closeClients(ctx context.Context, graceful bool) error {
	n.mu.Lock()
	n.closed = true
	clients := map[*client]bool{} // a client is listed once per session it had
	for _, c := range n.clients {
		clients[c] = true
	}
	n.mu.Unlock()
	// Concurrently: without a quorum each close waits until ctx ends.
	var wg sync.WaitGroup
	var failed atomic.Int32
	for c := range clients {
		wg.Go(func() {
			if !graceful {
				c.abandon()
			} else if c.closeWithin(ctx) != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%w: %d of %d (their leases end when the sessions expire): %w",
			errSessionsLeft, f, len(clients), context.Cause(ctx))
	}
	return nil
}

func (n *Node) shutdown(ctx context.Context, graceful bool) error {
	n.once.Do(func() {
		n.metrics.Observe(nil)
		n.sessionsErr = n.closeClients(ctx, graceful)
		if n.sessionsErr != nil {
			n.log.Warn("stopping without closing every session in the store", "error", n.sessionsErr)
		}
		var errs []error
		n.chatter.quiet.Store(true) // what Raft says while it stops is routine
		if n.raft != nil {
			if graceful && n.raft.State() == raft.Leader && n.trans != nil {
				n.transferLeadership(ctx)
			}
			n.commitMu.Lock() // no Apply of ours in flight at Shutdown
			errs = append(errs, n.raft.Shutdown().Error())
			n.commitMu.Unlock()
		}
		n.cancel()
		n.wg.Wait()
		n.exp.follow()
		if n.heartbeats != nil {
			n.heartbeats.quiesce() // no heartbeat may write to the stores closed next
		}
		errs = append(errs, n.closeStores())
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// transferLeadership hands leadership to another voter before this node
// stops, so that the cluster does not wait an election timeout, unless ctx
// has already ended. Raft answers the transfer within an election timeout
// whatever state its main loop is in, so this can outlast ctx by at most
// that.
func (n *Node) transferLeadership(ctx context.Context) {
	if ctx.Err() != nil {
		n.log.Debug("leadership transfer on close skipped: out of time", "error", context.Cause(ctx))
		return
	}
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		n.log.Debug("leadership transfer on close", "error", err)
	}
}

func (n *Node) closeStores() error {
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		errs = append(errs, n.closers[i]())
	}
	n.closers = nil
	return errors.Join(errs...)
}
