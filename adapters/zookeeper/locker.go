package zookeeper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
)

// Locker is a lock.Locker over one ZooKeeper session. All methods are safe
// for concurrent use.
type Locker struct {
	cfg        Config
	conn       *zk.Conn
	ownConn    bool
	log        *slog.Logger
	negotiated atomic.Int64 // negotiated session timeout (ns); 0: unknown

	base   context.Context // cancelled, with cause lock.ErrClosed, by Close
	cancel context.CancelCauseFunc
	// stopped ends when Close has finished its own cleanup: background
	// deletes give up then.
	stopped context.Context
	stop    context.CancelFunc

	kickProbe chan struct{}
	kickWatch chan struct{}

	mu       sync.Mutex
	closed   bool
	sessID   int64     // the session the deadline refers to; 0: none yet
	deadline time.Time // session leases of sessID end at this time
	fresh    chan struct{}
	leases   map[*lease]struct{}
	orphans  map[string]orphan

	ops   sync.WaitGroup // public calls in progress
	calls sync.WaitGroup // goroutines of store calls
	bg    sync.WaitGroup // prober and watchdog
}

var _ lock.Locker = (*Locker)(nil)

// New validates cfg and returns a Locker. With Servers it connects (in the
// background: New does not wait for the first session); with Conn it uses
// the given connection.
func New(cfg Config) (*Locker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Locker{
		cfg:       cfg,
		log:       cfg.Logger,
		kickProbe: make(chan struct{}, 1),
		kickWatch: make(chan struct{}, 1),
		fresh:     make(chan struct{}),
		leases:    make(map[*lease]struct{}),
		orphans:   make(map[string]orphan),
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

// onEvent is go-zookeeper's event callback for a connection the Locker
// made; it must not block. Events only speed things up: the prober and the
// watchdog find the same facts on their own.
func (l *Locker) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	switch ev.State {
	case zk.StateExpired:
		kick(l.kickWatch)
	case zk.StateHasSession:
		kick(l.kickProbe)
	}
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
	opCtx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(l.base, func() { cancel(lock.ErrClosed) })
	return opCtx, func() {
		stop()
		cancel(nil)
		l.ops.Done()
	}, nil
}

// fail maps err of a call made under opCtx for the caller, whose ctx is
// ctx: the caller's ctx error, ErrClosed, or err.
func (l *Locker) fail(ctx context.Context, what string, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("zookeeper: %s: %w", what, ctxError(ctx))
	case l.base.Err() != nil || errors.Is(err, zk.ErrClosing):
		return fmt.Errorf("zookeeper: %s: %w", what, lock.ErrClosed)
	}
	return fmt.Errorf("zookeeper: %s: %w", what, err)
}

// Acquire implements lock.Locker.
func (l *Locker) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.acquire(ctx, name, true, opts)
}

// TryAcquire implements lock.Locker.
func (l *Locker) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.acquire(ctx, name, false, opts)
}

func (l *Locker) acquire(ctx context.Context, name string, wait bool, opts []lock.Option) (lock.Lease, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return nil, err
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("zookeeper: acquire %q: %w", name, err)
	}
	defer end()
	c, err := l.newClaim(name, o)
	if err != nil {
		return nil, err
	}
	le, err := l.runClaim(opCtx, c, wait)
	if err != nil {
		if c.path != "" {
			l.withdraw(c)
		}
		if errors.Is(err, lock.ErrHeld) || errors.Is(err, ErrTTLUnsupported) {
			return nil, err
		}
		return nil, l.fail(ctx, fmt.Sprintf("acquire %q", name), err)
	}
	return le, nil
}

// claim is one Acquire or TryAcquire: one node in the name's directory.
type claim struct {
	name   string
	dir    string
	guid   string
	ttl    time.Duration
	data   []byte
	path   string    // the node, once created
	sess   int64     // the session the (ephemeral) node was created on; 0: unknown
	marked time.Time // TTL: send time of the create or last refresh of the node
	// ambiguous: a create of this claim failed at the connection level, so
	// more nodes with its GUID may exist.
	ambiguous bool
}

func (l *Locker) dir(name string) string { return l.cfg.Root + "/" + escapeName(name) }

func (l *Locker) newClaim(name string, o lock.Options) (*claim, error) {
	var g [16]byte
	if _, err := rand.Read(g[:]); err != nil {
		return nil, fmt.Errorf("zookeeper: GUID: %w", err)
	}
	return &claim{
		name: name,
		dir:  l.dir(name),
		guid: hex.EncodeToString(g[:]),
		ttl:  o.TTL,
		data: encodeData(nodeData{ttl: o.TTL, owner: o.Owner}),
	}, nil
}

// errRequeue: the claim's node is gone (session expired, TTL reaped, or
// the directory reaped); create a new one.
var errRequeue = errors.New("zookeeper: claim node lost, queueing again")

func (l *Locker) runClaim(ctx context.Context, c *claim, wait bool) (*lease, error) {
	for {
		if c.path == "" {
			if err := l.create(ctx, c); err != nil {
				return nil, err
			}
		}
		le, err := l.queue(ctx, c, wait)
		if !errors.Is(err, errRequeue) {
			return le, err
		}
		l.log.Debug("claim node lost; queueing again", "name", c.name, "path", c.path)
		c.path = "" // TryAcquire too: a lost node is no answer
	}
}

// create makes the claim's node, creating the directory if needed and
// recovering the node of a create whose reply was lost.
func (l *Locker) create(ctx context.Context, c *claim) (err error) {
	prefix := c.dir + "/" + protectedPrefix + c.guid + lockMarker
	var bo backoff
	first := time.Now()
	defer func() {
		if err != nil && c.ambiguous {
			l.addOrphan(orphan{dir: c.dir, guid: c.guid})
		}
	}()
	for {
		var path string
		before := l.conn.SessionID()
		// If ctx ends while the create is in flight, wait a little for its
		// reply: the node may exist already, and Acquire must delete it
		// before it returns.
		err := l.callGrace(ctx, l.cleanupTimeout(), true, func() (err error) {
			if c.ttl > 0 {
				path, err = l.conn.CreateTTL(prefix, c.data, zk.FlagPersistentSequentialWithTTL, l.cfg.ACL, c.ttl)
			} else {
				path, err = l.conn.Create(prefix, c.data, zk.FlagEphemeralSequential, l.cfg.ACL)
			}
			return err
		}, func(err error) { l.abandonedCreate(c, path, before, err) })
		switch {
		case err == nil:
			c.path, c.marked = path, first
			if after := l.conn.SessionID(); after == before {
				c.sess = before
			}
			if c.ttl > 0 {
				c.sess = 0
			}
			return nil
		case errors.Is(err, zk.ErrNoNode):
			if err := l.ensureDir(ctx, c.dir); err != nil {
				return err
			}
		case isUnimplemented(err):
			return fmt.Errorf("%w: %w", ErrTTLUnsupported, err)
		case retryable(err):
			c.ambiguous = true // this attempt may have created a node we never saw
			l.log.Debug("create failed ambiguously; looking for its node", "name", c.name, "error", err)
			if found, ferr := l.recoverCreate(ctx, c); ferr == nil && found {
				c.marked = first
				return nil
			}
			if err := bo.wait(ctx); err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// abandonedCreate cleans up after a create whose caller stopped waiting.
func (l *Locker) abandonedCreate(c *claim, path string, sess int64, err error) {
	switch {
	case err == nil:
		if c.ttl > 0 {
			sess = 0
		}
		o := orphan{path: path, session: sess}
		ctx, cancel := context.WithTimeout(l.stopped, l.cleanupTimeout())
		defer cancel()
		if !l.deleteOrphan(ctx, o) {
			l.addOrphan(o)
		}
	case retryable(err):
		l.addOrphan(orphan{dir: c.dir, guid: c.guid})
	}
}

// isUnimplemented reports ZooKeeper's UNIMPLEMENTED (-6), which go-zookeeper
// has no error value for: a TTL create on a server without extended types.
func isUnimplemented(err error) bool {
	return err != nil && strings.HasSuffix(err.Error(), "unknown error: -6")
}

// recoverCreate looks for the node of a create whose reply was lost: a
// child carrying the claim's GUID. It adopts the lowest such node and
// deletes any others.
func (l *Locker) recoverCreate(ctx context.Context, c *claim) (bool, error) {
	var names []string
	err := l.call(ctx, false, func() (err error) { names, _, err = l.conn.Children(c.dir); return err }, nil)
	if errors.Is(err, zk.ErrNoNode) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	found := false
	for _, k := range sortedChildren(names) {
		if k.guid != c.guid {
			continue
		}
		if !found {
			found = true
			c.path = c.dir + "/" + k.name
			c.sess = 0 // unknown: checked at the grant
			continue
		}
		l.addOrphan(orphan{path: c.dir + "/" + k.name})
	}
	if found {
		l.log.Debug("recovered the node of a create whose reply was lost", "path", c.path)
	}
	return found, nil
}

// ensureDir creates the lock directory (a container) and the root above it.
func (l *Locker) ensureDir(ctx context.Context, dir string) error {
	var bo backoff
	for {
		err := l.call(ctx, true, func() error {
			_, err := l.conn.CreateContainer(dir, nil, zk.FlagContainer, l.cfg.ACL)
			return err
		}, nil)
		switch {
		case err == nil || errors.Is(err, zk.ErrNodeExists):
			return nil
		case errors.Is(err, zk.ErrNoNode):
			err = l.ensureRoot(ctx)
		}
		switch {
		case err == nil:
		case retryable(err):
			if err := bo.wait(ctx); err != nil {
				return err
			}
		default:
			return err
		}
	}
}

func (l *Locker) ensureRoot(ctx context.Context) error {
	parts := strings.Split(l.cfg.Root[1:], "/")
	for i := range parts {
		p := "/" + strings.Join(parts[:i+1], "/")
		err := l.call(ctx, true, func() error {
			_, err := l.conn.Create(p, nil, zk.FlagPersistent, l.cfg.ACL)
			return err
		}, nil)
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return err
		}
	}
	return nil
}

// queue waits until the claim's node is the lowest child (or, without
// wait, checks once), watching only its predecessor.
func (l *Locker) queue(ctx context.Context, c *claim, wait bool) (*lease, error) {
	var bo backoff
	mine := c.path[len(c.dir)+1:]
	for {
		var names []string
		err := l.call(ctx, false, func() (err error) { names, _, err = l.conn.Children(c.dir); return err }, nil)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return nil, errRequeue
		case retryable(err):
			if err := bo.wait(ctx); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			return nil, err
		}
		kids, idx, dups := position(c, sortedChildren(names), mine)
		for _, d := range dups {
			l.log.Debug("deleting a duplicate claim node", "path", d)
			if err := l.deleteNode(ctx, d); err != nil {
				l.addOrphan(orphan{path: d})
			}
		}
		switch {
		case idx < 0:
			return nil, errRequeue
		case idx == 0:
			return l.grant(ctx, c)
		case !wait:
			return nil, fmt.Errorf("zookeeper: %q: %w", c.name, lock.ErrHeld)
		}
		pred := c.dir + "/" + kids[idx-1].name
		var (
			exists bool
			ch     <-chan zk.Event
		)
		err = l.call(ctx, false, func() (err error) { exists, _, ch, err = l.conn.ExistsW(pred); return err }, nil)
		switch {
		case retryable(err):
			if err := bo.wait(ctx); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			return nil, err
		case !exists:
			continue // the predecessor vanished before the watch was set: list again
		}
		if err := l.await(ctx, c, ch); err != nil {
			return nil, err
		}
	}
}

// position finds the claim's node among kids. It returns the claims other
// than duplicates of the claim's node (from a create applied after its reply
// was lost), the index of the claim's node (-1 if it is gone) and the
// duplicates.
func position(c *claim, kids []child, mine string) ([]child, int, []string) {
	out := kids[:0]
	idx := -1
	var dups []string
	for _, k := range kids {
		if k.guid == c.guid {
			if k.name != mine {
				dups = append(dups, c.dir+"/"+k.name)
				continue
			}
			idx = len(out)
		}
		out = append(out, k)
	}
	return out, idx, dups
}

// await waits for the predecessor's watch to fire, refreshing a TTL
// claim's node meanwhile so that a live waiter keeps its place.
func (l *Locker) await(ctx context.Context, c *claim, ch <-chan zk.Event) error {
	for {
		var (
			refresh <-chan time.Time
			t       *time.Timer
		)
		if c.ttl > 0 {
			t = time.NewTimer(time.Until(c.marked.Add(c.ttl / 3)))
			refresh = t.C
		}
		var err error
		fired, touch := false, false
		select {
		case <-ch:
			fired = true
		case <-ctx.Done():
			err = ctxError(ctx)
		case <-refresh:
			touch = true
		}
		if t != nil {
			t.Stop()
		}
		switch {
		case fired:
			return nil
		case err != nil:
			return err
		case touch:
			if _, err := l.touch(ctx, c); err != nil {
				return err
			}
		}
	}
}

// touch is a SetData on a TTL claim's node, which restarts its TTL on the
// server. It returns the node's Stat. A reply that arrives after the node's
// old local deadline proves nothing (the reaper may have picked the node
// before the SetData), so the node is given up.
func (l *Locker) touch(ctx context.Context, c *claim) (*zk.Stat, error) {
	var bo backoff
	for {
		var stat *zk.Stat
		sent := time.Now()
		err := l.call(ctx, true, func() (err error) { stat, err = l.conn.Set(c.path, c.data, -1); return err }, nil)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return nil, errRequeue
		case retryable(err):
			if err := bo.wait(ctx); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			return nil, err
		}
		if !time.Now().Before(c.marked.Add(c.ttl - ttlMargin(c.ttl))) {
			l.addOrphan(orphan{path: c.path})
			return nil, errRequeue
		}
		c.marked = sent
		return stat, nil
	}
}

// grant turns the lowest claim into a lease.
func (l *Locker) grant(ctx context.Context, c *claim) (*lease, error) {
	if c.ttl > 0 {
		stat, err := l.touch(ctx, c) // the lease's TTL starts now
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.newLeaseLocked(c, uint64(stat.Czxid), 0), nil
	}
	var bo backoff
	for {
		l.mu.Lock()
		fresh, ok := l.fresh, l.sessID != 0 && time.Now().Before(l.deadline)
		l.mu.Unlock()
		if !ok {
			// In jeopardy: wait until the session is confirmed again.
			kick(l.kickProbe)
			select {
			case <-fresh:
				continue
			case <-ctx.Done():
				return nil, ctxError(ctx)
			}
		}
		var (
			exists bool
			stat   *zk.Stat
		)
		err := l.call(ctx, false, func() (err error) { exists, stat, err = l.conn.Exists(c.path); return err }, nil)
		switch {
		case retryable(err):
			if err := bo.wait(ctx); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			return nil, err
		case !exists:
			return nil, errRequeue
		}
		l.mu.Lock()
		if stat.EphemeralOwner == l.sessID && time.Now().Before(l.deadline) {
			le := l.newLeaseLocked(c, uint64(stat.Czxid), l.sessID)
			l.mu.Unlock()
			return le, nil
		}
		fresh = l.fresh
		l.mu.Unlock()
		// The node is on a session the Locker has not confirmed yet (the
		// connection has just moved to a new one): wait for the next probe.
		kick(l.kickProbe)
		select {
		case <-fresh:
		case <-ctx.Done():
			return nil, ctxError(ctx)
		}
	}
}

// withdraw deletes the node of a claim that did not become a lease (or
// whose grant raced its cancellation: deleting it is the release), and
// every other node carrying its GUID if a create of it was ambiguous.
func (l *Locker) withdraw(c *claim) {
	ctx, cancel := context.WithTimeout(context.Background(), l.cleanupTimeout())
	defer cancel()
	if c.ambiguous {
		o := orphan{dir: c.dir, guid: c.guid}
		if !l.deleteOrphan(ctx, o) {
			l.addOrphan(o)
		}
		return
	}
	if err := l.deleteNode(ctx, c.path); err != nil {
		l.addOrphan(orphan{path: c.path, session: c.sess})
	}
}

// deleteNode deletes path, retrying after connection-level failures until
// ctx ends. A node that is already gone is no error.
func (l *Locker) deleteNode(ctx context.Context, path string) error {
	var bo backoff
	for {
		err := l.call(ctx, true, func() error { return l.conn.Delete(path, -1) }, nil)
		switch {
		case err == nil || errors.Is(err, zk.ErrNoNode):
			return nil
		case retryable(err):
			if err := bo.wait(ctx); err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// Inspect implements lock.Locker: sync, list, and read the lowest child.
func (l *Locker) Inspect(ctx context.Context, name string) (lock.Info, error) {
	if err := lock.ValidateName(name); err != nil {
		return lock.Info{}, err
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return lock.Info{}, fmt.Errorf("zookeeper: inspect %q: %w", name, err)
	}
	defer end()
	info, err := l.inspect(opCtx, name)
	if err != nil {
		return lock.Info{}, l.fail(ctx, fmt.Sprintf("inspect %q", name), err)
	}
	return info, nil
}

func (l *Locker) inspect(ctx context.Context, name string) (lock.Info, error) {
	dir := l.dir(name)
	info := lock.Info{Name: name}
	var bo backoff
	for {
		if err := l.barrier(ctx); err != nil {
			if retryable(err) {
				if err := bo.wait(ctx); err != nil {
					return info, err
				}
				continue
			}
			return info, err
		}
		var names []string
		err := l.call(ctx, false, func() (err error) { names, _, err = l.conn.Children(dir); return err }, nil)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return info, nil
		case retryable(err):
			if err := bo.wait(ctx); err != nil {
				return info, err
			}
			continue
		case err != nil:
			return info, err
		}
		kids := sortedChildren(names)
		if len(kids) == 0 {
			return info, nil
		}
		var (
			data []byte
			stat *zk.Stat
		)
		err = l.call(ctx, false, func() (err error) { data, stat, err = l.conn.Get(dir + "/" + kids[0].name); return err }, nil)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue // released meanwhile: look again
		case retryable(err):
			if err := bo.wait(ctx); err != nil {
				return info, err
			}
			continue
		case err != nil:
			return info, err
		}
		d, err := decodeData(data)
		if err != nil {
			return info, fmt.Errorf("node %s: %w", kids[0].name, err)
		}
		info.Held, info.Token, info.Owner, info.Waiters = true, uint64(stat.Czxid), d.owner, len(kids)-1
		if d.ttl > 0 {
			left := d.ttl - time.Duration(time.Now().UnixMilli()-stat.Mtime)*time.Millisecond
			info.ExpiresIn = min(max(left, time.Nanosecond), d.ttl)
		}
		return info, nil
	}
}

// barrier makes the reads that follow on this session see every write that
// completed before it was called. A sync is not enough: a server that is
// the leader answers a sync at once, before it has applied every
// committed write to its own tree. So barrier makes a write of its own (a
// multi with one version check of the root, which changes nothing): it
// is ordered after every completed write, and the session's reads after
// its reply see at least its state.
func (l *Locker) barrier(ctx context.Context) error {
	check := func() error {
		_, err := l.conn.Multi(&zk.CheckVersionRequest{Path: l.cfg.Root, Version: -1})
		return err
	}
	err := l.call(ctx, true, check, nil)
	if errors.Is(err, zk.ErrNoNode) {
		if err := l.ensureRoot(ctx); err != nil {
			return err
		}
		err = l.call(ctx, true, check, nil)
	}
	return err
}

// Close implements lock.Locker: it withdraws queued calls, ends and deletes
// every lease of this Locker, stops the background work and closes the
// connection if New made it.
func (l *Locker) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.cancel(lock.ErrClosed)
	l.ops.Wait() // queued Acquire calls withdraw their nodes as they return

	l.mu.Lock()
	leases := make([]*lease, 0, len(l.leases))
	for le := range l.leases {
		leases = append(leases, le)
		le.endLocked(lock.ErrReleased)
	}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.cleanupTimeout())
	defer cancel()
	for _, le := range leases {
		if err := l.deleteNode(ctx, le.path); err != nil {
			l.log.Debug("close: lease node not deleted", "path", le.path, "error", err)
		}
	}
	l.cleanOrphans(ctx)
	l.bg.Wait()
	l.stop()
	if l.ownConn {
		l.conn.Close()
	}
	l.calls.Wait()
	return nil
}
