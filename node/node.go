package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/node/lock"
)

// startTimeout bounds how long New waits for the node to become a leader
// that has applied its whole log.
const startTimeout = 30 * time.Second

// Node is one replica of the lock state machine, embedded in the
// application. It implements lock.Locker through its default client; call
// NewLocker for more independent clients (sessions) on the same node.
type Node struct {
	cfg    Config
	log    *slog.Logger
	raft   *raft.Raft
	bridge *bridge
	exp    *expirer

	// closers release Raft's stores and transport after Shutdown.
	closers []func() error

	mu      sync.RWMutex
	clients map[uint64]*client // by session ID
	closed  bool

	def      *client
	ready    chan struct{} // closed once leader with the log applied
	stop     chan struct{} // closed by Close
	wg       sync.WaitGroup
	closeErr error
	once     sync.Once
}

var _ lock.Locker = (*Node)(nil)

// New starts a node. With the zero Config it is an in-memory single node,
// the leader as soon as New returns. With DataDir it reopens (or creates)
// the durable state there.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.ID),
		exp:     newExpirer(),
		clients: map[uint64]*client{},
		ready:   make(chan struct{}),
		stop:    make(chan struct{}),
	}
	n.bridge = newBridge(n.dispatch, nil)
	if err := n.startRaft(); err != nil {
		_ = n.closeStores()
		return nil, err
	}
	n.wg.Add(2)
	go n.watchLeadership()
	go n.runExpiries()

	select {
	case <-n.ready:
	case <-time.After(startTimeout):
		_ = n.shutdown(false)
		return nil, fmt.Errorf("node: no leader after %v", startTimeout)
	}
	n.def, err = n.newClient(context.Background())
	if err != nil {
		_ = n.shutdown(false)
		return nil, err
	}
	return n, nil
}

func (n *Node) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.ID)
	rc.Logger = newHCLog(n.log)
	// A single voter needs no failure detection; short timers make it the
	// leader at once. Cluster profiles come with cluster mode.
	rc.HeartbeatTimeout = 50 * time.Millisecond
	rc.ElectionTimeout = 50 * time.Millisecond
	rc.LeaderLeaseTimeout = 50 * time.Millisecond
	rc.CommitTimeout = 5 * time.Millisecond
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	rc.ShutdownOnRemove = false
	rc.NoSnapshotRestoreOnStart = false

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if n.cfg.DataDir == "" {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("node: DataDir: %w", err)
		}
		store, err := raftboltdb.New(raftboltdb.Options{
			Path: filepath.Join(n.cfg.DataDir, "raft.db"),
			BoltOptions: &bbolt.Options{
				Timeout:        time.Second, // another process holds the file: fail, don't hang
				NoFreelistSync: true,
				FreelistType:   bbolt.FreelistMapType,
			},
		})
		if err != nil {
			return fmt.Errorf("node: open log store in DataDir: %w", err)
		}
		n.closers = append(n.closers, store.Close)
		cached, err := raft.NewLogCache(512, store)
		if err != nil {
			return err
		}
		fss, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, 2, rc.Logger)
		if err != nil {
			return fmt.Errorf("node: snapshot store in DataDir: %w", err)
		}
		logs, stable, snaps = cached, store, fss
	}

	addr, trans := raft.NewInmemTransport(raft.ServerAddress(n.cfg.ID))
	n.closers = append(n.closers, trans.Close)

	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("node: read existing state: %w", err)
	}
	if !existing {
		err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, raft.Configuration{
			Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: addr}},
		})
		if err != nil {
			return fmt.Errorf("node: bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, n.bridge, logs, stable, snaps, trans)
	if err != nil {
		return fmt.Errorf("node: start raft: %w", err)
	}
	n.raft = r
	return nil
}

// watchLeadership arms the expiry timers when this node becomes the leader
// (after a barrier, so the state holds every committed entry) and stops them
// when it is not.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	readyOnce := sync.OnceFunc(func() { close(n.ready) })
	for {
		select {
		case <-n.stop:
			return
		case isLeader := <-n.raft.LeaderCh():
			if !isLeader {
				n.exp.follow()
				continue
			}
			if err := n.raft.Barrier(startTimeout).Error(); err != nil {
				n.log.Warn("barrier after election failed", "error", err)
				continue
			}
			n.bridge.read(n.exp.lead)
			n.log.Debug("leading: expiry timers armed")
			readyOnce()
		}
	}
}

// runExpiries proposes the Expire commands of fired timers.
func (n *Node) runExpiries() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case <-n.exp.wake:
		}
		for _, cmd := range n.exp.take() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := n.propose(ctx, cmd)
			cancel()
			if err != nil {
				// Leadership moved or the node is closing; the next leader
				// re-arms every timer.
				n.log.Debug("expiry not committed", "error", err)
				continue
			}
			n.log.Debug("expired", "command", cmd.String(), "code", res.GetCode().String())
		}
	}
}

// dispatch routes applied events to the expirer and to the local clients.
// It runs in the FSM goroutine with the bridge's write lock held: it must
// not block.
func (n *Node) dispatch(events []fsm.Event) {
	n.exp.handle(events)
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, ev := range events {
		if c := n.clients[ev.Session]; c != nil {
			c.handle(ev)
		}
	}
}

// propose stamps, encodes and commits cmd, returning its result. Errors:
// lock.ErrClosed after Close, lock.ErrNoQuorum when it could not commit,
// ctx's error when ctx ended first.
func (n *Node) propose(ctx context.Context, cmd *fsmpb.Command) (*fsmpb.Result, error) {
	cmd.StampUnixNano = time.Now().UnixNano()
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		return nil, n.raftErr(ctx, err)
	}
	ar, ok := f.Response().(applyResult)
	if !ok || ar.res == nil {
		return nil, fmt.Errorf("node: unexpected apply response %T", f.Response())
	}
	return ar.res, nil
}

func (n *Node) raftErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", lock.ErrClosed, err)
	case ctx.Err() != nil:
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	default:
		return fmt.Errorf("%w: %w", lock.ErrNoQuorum, err)
	}
}

// readBarrier makes a following local read linearizable: it confirms that
// this node is still the leader after capturing the commit index, then
// waits until the state has applied that index.
func (n *Node) readBarrier(ctx context.Context) error {
	select {
	case <-n.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	index := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return n.raftErr(ctx, err)
	}
	return n.bridge.waitApplied(ctx, index)
}

// newSessionID returns a random non-zero session ID.
func newSessionID() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id
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
func (n *Node) Inspect(ctx context.Context, name string) (lock.Info, error) {
	return n.def.Inspect(ctx, name)
}

// Close releases the leases and sessions of every client of this node, then
// stops the node. It is idempotent and safe on a partially started node.
func (n *Node) Close() error { return n.shutdown(true) }

// crash stops the node the way a killed process would: no session is
// closed and no lease released, so the store keeps them until they expire.
// Local leases end with ErrLost. Used by tests that restart on a DataDir.
func (n *Node) crash() error { return n.shutdown(false) }

func (n *Node) shutdown(graceful bool) error {
	n.once.Do(func() {
		n.mu.Lock()
		n.closed = true
		clients := make([]*client, 0, len(n.clients))
		for _, c := range n.clients {
			clients = append(clients, c)
		}
		n.mu.Unlock()
		for _, c := range clients {
			if graceful {
				_ = c.Close()
			} else {
				c.abandon()
			}
		}
		close(n.stop)
		var errs []error
		if n.raft != nil {
			errs = append(errs, n.raft.Shutdown().Error())
		}
		n.wg.Wait()
		n.exp.follow()
		errs = append(errs, n.closeStores())
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

func (n *Node) closeStores() error {
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		errs = append(errs, n.closers[i]())
	}
	n.closers = nil
	return errors.Join(errs...)
}
