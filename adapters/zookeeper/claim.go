package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
)

// The claim recipe. Every Acquire, TryAcquire, Campaign, permit, read
// and write call is one claim, which goes through these steps in order:
//
//  1. create: make a sequential child in the name's directory, protected
//     by the claim's GUID (create.go);
//  2. queue: list the children; at the first listing of a node, check
//     the type of every child ahead, in its name (another type, or a
//     semaphore of another limit, fails); the claim's position admits it
//     or not (admit.go: the lowest child for a mutex, an election or a
//     writer; fewer than L ahead for a permit; no writer ahead for a
//     reader); a waiter watches what may admit it, and lists again when
//     the watch fires; an admitted permit chooses its slot (slot.go);
//  3. grant: the admitted claim becomes a lease (a TTL claim's TTL starts
//     now; a session claim needs a confirmed session; a permit's grant
//     writes its slot);
//  4. withdraw: a claim that does not become a lease deletes its node
//     before the call returns.
//
// A claim whose node is lost (errRequeue) goes back to step 1.

// Acquire implements lock.Locker.
func (l *Locker) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.acquire(ctx, name, true, opts)
}

// TryAcquire implements lock.Locker.
func (l *Locker) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.acquire(ctx, name, false, opts)
}

// acquire runs one claim and turns its outcome into Acquire's: a claim
// that did not become a lease is withdrawn first.
func (l *Locker) acquire(ctx context.Context, name string, wait bool, opts []lock.Option) (lock.Lease, error) {
	start := time.Now()
	le, err := l.claimLease(ctx, name, wait, opts)
	l.sink.Acquire(!wait, metrics.OutcomeOf(err), time.Since(start))
	if err != nil {
		return nil, err
	}
	return le, nil
}

// claimLease is acquire without its measurement.
func (l *Locker) claimLease(ctx context.Context, name string, wait bool, opts []lock.Option) (*lease, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return nil, err
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("zookeeper: acquire %q: %w", name, err)
	}
	defer end()
	c, err := l.newClaim(name, typeMutex, false, o)
	if err != nil {
		return nil, err
	}
	le, err := l.grantClaim(ctx, opCtx, c, wait, "acquire")
	if err != nil {
		return nil, err
	}
	var waited time.Duration
	if !c.queued.IsZero() {
		waited = time.Since(c.queued)
	}
	l.sink.Granted(kindOf(c.ttl), waited)
	return le, nil
}

// grantClaim runs claim c of a public call (what: "acquire", "campaign")
// made under opCtx (from begin) with the caller's ctx, until it is a
// lease; a claim that did not become one is withdrawn, and its error made
// the caller's (fail).
func (l *Locker) grantClaim(ctx, opCtx context.Context, c *claim, wait bool, what string) (*lease, error) {
	le, err := l.runClaim(opCtx, c, wait)
	if err != nil {
		if c.path != "" {
			l.withdraw(c)
		}
		if errors.Is(err, lock.ErrHeld) || errors.Is(err, ErrTTLUnsupported) || errors.Is(err, lock.ErrInvalidOption) {
			return nil, err
		}
		return nil, l.fail(ctx, opCtx, fmt.Sprintf("%s %q", what, c.name), err)
	}
	if err := l.unlessClosed(le); err != nil {
		return nil, fmt.Errorf("zookeeper: %s %q: %w", what, c.name, err)
	}
	return le, nil
}

// claim is one Acquire or TryAcquire: one node in the name's directory.
type claim struct {
	name    string
	dir     string
	guid    string   // the id in the node's name: a GUID, after the type token of a type other than a mutex
	typ     nameType // the type the claim asks the name as (its id's token)
	write   bool     // a read-write lock's writer
	ttl     time.Duration
	queued  time.Time // when the claim first waited for a predecessor (zero: never)
	meta    nodeData  // the record the claim writes to its node
	path    string    // the node, once created
	version int32     // the node's version as last written or read
	sess    int64     // the session the (ephemeral) node was created on; 0: unknown
	marked  time.Time // send time of the create or (TTL) the last refresh of the node
	// ambiguous: a create of this claim failed at the connection level, so
	// more nodes with its GUID may exist.
	ambiguous bool
	// waited: the node was not the lowest at its first listing, so its
	// grant time is not its creation time (DESIGN.md, "Durations on the
	// server's clock").
	waited bool
	// checked: the type check against every child ahead of the node was
	// passed (DESIGN.md, "The type check against every child ahead").
	checked bool
	// slots: the slots the permit claim read in the records of the
	// children ahead, by child name (a node's slot never changes).
	slots map[string]uint16
}

// newClaim makes the claim of name, of type typ (a read-write lock's:
// a writer if write; an election's value is o.Owner), with a fresh GUID;
// nothing is sent yet.
func (l *Locker) newClaim(name string, typ nameType, write bool, o lock.Options) (*claim, error) {
	guid, err := newID(typ, write)
	if err != nil {
		return nil, err
	}
	return &claim{
		name:  name,
		dir:   l.dir(name),
		guid:  guid,
		typ:   typ,
		write: write,
		ttl:   o.TTL,
		meta: nodeData{
			format:  formatV2,
			ttl:     o.TTL,
			timeout: l.sessionTimeout(),
			holder:  l.id,
			node:    l.cfg.Node,
			owner:   o.Owner,
		},
	}, nil
}

// orphan is the claim's node as an orphan: checked if it is a TTL node
// (a granted one can be adopted).
func (c *claim) orphan() orphan {
	return orphan{path: c.path, session: c.sess, checked: c.ttl > 0, version: c.version}
}

// errRequeue: the claim's node is gone (session expired, TTL reaped, or
// the directory reaped); create a new one.
var errRequeue = errors.New("zookeeper: claim node lost, queueing again")

// runClaim runs the recipe: create the node (step 1), then queue, which
// grants (steps 2 and 3); a lost node starts over with a new one.
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
		if err := l.requeue(c); err != nil { // TryAcquire too: a lost node is no answer
			return nil, err
		}
	}
}

// requeue readies a claim whose node is lost (or given up) for a new
// create. The claim gets a fresh GUID: a later ambiguous create looks for
// nodes by GUID, and must not find and adopt the given-up node, whose
// server-side TTL started before the new create was sent. If a create of
// the old GUID was ambiguous, a sweep of that GUID goes to the orphans.
func (l *Locker) requeue(c *claim) error {
	if c.ambiguous {
		l.addOrphan(orphan{dir: c.dir, guid: c.guid, checked: c.ttl > 0})
	}
	guid, err := newID(c.typ, c.write)
	if err != nil {
		return err
	}
	c.guid, c.path, c.sess, c.ambiguous = guid, "", 0, false
	c.version, c.waited, c.checked = 0, false, false
	c.meta.slotted, c.meta.slot, c.slots = false, 0, nil // a new node chooses its slot again
	return nil
}

// queue waits until the claim's position admits it (admitted: for a
// mutex or an election, the lowest child) and grants it; without wait it
// checks once. It lists the children, watches what may admit it, and
// lists again when the watch fires. A connection-level failure restarts
// it from the listing.
func (l *Locker) queue(ctx context.Context, c *claim, wait bool) (*lease, error) {
	var le *lease
	err := retry(ctx, func() error {
		ahead, err := l.ahead(ctx, c)
		if err != nil {
			return err
		}
		if !c.checked {
			if err := checkTypes(c, ahead); err != nil {
				return err
			}
			c.checked = true
		}
		ok, key := c.admitted(ahead)
		switch {
		case ok && c.typ.family == famSemaphore:
			if err := l.chooseSlot(ctx, c, ahead); err != nil {
				return err
			}
			l.hooks.call(func(h *hooks) func() { return h.slotChosen })
			fallthrough
		case ok:
			le, err = l.grant(ctx, c)
			return err
		case !wait:
			return fmt.Errorf("zookeeper: %q: %w", c.name, lock.ErrHeld)
		}
		c.waited = true
		if c.typ.family == famSemaphore && len(ahead) == c.typ.limit {
			// The first waiter: the holders' slots, read now, spare the
			// hand-off that admits it the reads (slot.go).
			if err := l.readSlots(ctx, c, ahead); err != nil {
				return err
			}
		}
		l.hooks.call(func(h *hooks) func() { return h.beforeArm })
		ch, err := l.armed(ctx, c, key, len(ahead))
		if err != nil {
			return err
		}
		return l.wait(ctx, c, ch)
	})
	return le, err
}

// wait waits for a watch of a queued claim to fire (await), counted as
// waiting, and answers errAgain (list again) when it has.
func (l *Locker) wait(ctx context.Context, c *claim, ch <-chan zk.Event) error {
	if c.queued.IsZero() {
		c.queued = time.Now()
	}
	l.sink.Waiting(+1)
	err := l.await(ctx, c, ch)
	l.sink.Waiting(-1)
	if err != nil {
		return err
	}
	return errAgain
}

// ahead lists the claim's directory and returns the children ahead of
// the claim's node, in order (none: the claim's node is the lowest; the
// last: its predecessor). It deletes duplicates of the claim's node on
// the way.
func (l *Locker) ahead(ctx context.Context, c *claim) ([]child, error) {
	kids, err := l.children(ctx, c.dir)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, errRequeue
	}
	if err != nil {
		return nil, err
	}
	kids, idx, dups := position(c, kids, c.path[len(c.dir)+1:])
	for _, d := range dups {
		l.log.Debug("deleting a duplicate claim node", "path", d)
		o := orphan{path: d, checked: c.ttl > 0, version: -1}
		if !l.deleteOrphan(ctx, o) {
			l.addOrphan(o)
		}
	}
	if idx < 0 {
		return nil, errRequeue
	}
	return kids[:idx], nil
}

// checkTypes looks at the type of every child ahead of the claim's node,
// in its name: one of another type than the claim's (or of a type this
// version does not know) fails the claim with ErrInvalidOption naming
// both types. No read: the listing has the names (DESIGN.md, "The type
// check against every child ahead").
func checkTypes(c *claim, ahead []child) error {
	for _, k := range ahead {
		switch {
		case k.typ == typeUnknown:
			return fmt.Errorf("%w: %q lives as %s (id %q), asked as %s", lock.ErrInvalidOption, c.name, k.typ, k.guid, c.typ)
		case k.typ != c.typ:
			return fmt.Errorf("%w: %q lives as %s, asked as %s", lock.ErrInvalidOption, c.name, k.typ, c.typ)
		}
	}
	return nil
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
			if _, err := l.touch(ctx, c, stateQueued); err != nil {
				return err
			}
		}
	}
}

// touch is a version-checked SetData of a TTL claim's record in state,
// which restarts its TTL on the server. It returns the node's Stat. A
// BadVersion is looked at (changed). A reply that arrives after the node's
// old local deadline proves nothing (the reaper may have picked the node
// before the SetData), so the node is given up.
func (l *Locker) touch(ctx context.Context, c *claim, state claimState) (*zk.Stat, error) {
	var (
		stat *zk.Stat
		sent time.Time
	)
	d := c.meta
	d.state = state
	data := encodeData(d)
	err := retry(ctx, func() (err error) {
		sent = time.Now()
		stat, err = callFor(ctx, l, 0, ackQuorum, func() (*zk.Stat, error) { return l.conn.Set(c.path, data, c.version) }, nil)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return errRequeue
		case errors.Is(err, zk.ErrBadVersion):
			return l.changed(ctx, c)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	c.version = stat.Version
	if !time.Now().Before(c.marked.Add(c.ttl - ttlMargin(c.ttl))) {
		l.addOrphan(c.orphan())
		return nil, errRequeue
	}
	c.marked = sent
	return stat, nil
}

// changed looks at a claim's node whose version changed under it: a
// write of ours whose reply was lost → take the version and go on
// (errAgain); marked by Revoke (the claim was the lowest, so Inspect
// reported it held, but it had not become a lease yet) → delete it and
// queue again; gone or another holder's → queue again (errRequeue).
func (l *Locker) changed(ctx context.Context, c *claim) error {
	d, stat, err := l.readData(ctx, c.path)
	switch {
	case errors.Is(err, zk.ErrNoNode) || errors.Is(err, errBadData):
		return errRequeue
	case err != nil:
		return err
	case !l.ours(d, 0):
		return errRequeue
	case d.state == stateRevoked:
		l.log.Warn("claim revoked before its grant; queueing again", "name", c.name, "token", stat.Czxid, "holder", l.id)
		if _, err := l.deleteMine(ctx, ownNode{path: c.path, version: stat.Version}); err != nil {
			o := c.orphan()
			o.version = stat.Version
			l.addOrphan(o)
		}
		return errRequeue
	}
	c.version = stat.Version
	return errAgain
}

// grant turns the lowest claim into a lease. A TTL lease's TTL starts with
// a SetData of its node. A session lease needs a confirmed session (a
// claim that becomes the lowest while the Locker is in jeopardy waits for
// the next acknowledged probe) and its node on that session.
func (l *Locker) grant(ctx context.Context, c *claim) (*lease, error) {
	if c.ttl > 0 {
		stat, err := l.touch(ctx, c, stateGranted) // the lease's TTL starts now
		if err != nil {
			return nil, err
		}
		// The SetData wrote no grant time (the client cannot know the
		// server's time before the reply); its mtime is the grant time,
		// which the lease's Refresh writes.
		c.meta.state, c.meta.granted = stateGranted, stat.Mtime
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.newLeaseLocked(c, uint64(stat.Czxid), 0), nil
	}
	var le *lease
	err := retry(ctx, func() error {
		if ok, fresh := l.confirmed(); !ok {
			return l.awaitConfirmation(ctx, fresh)
		}
		exists, stat, err := l.grantStat(ctx, c)
		switch {
		case err != nil:
			return err
		case !exists:
			return errRequeue
		case stat.Version != c.version:
			return l.changed(ctx, c)
		}
		var fresh <-chan struct{}
		if le, fresh = l.sessionLease(c, stat); le != nil {
			return nil
		}
		// The node is on a session the Locker has not confirmed yet (the
		// connection has just moved to a new one): wait for the next probe.
		return l.awaitConfirmation(ctx, fresh)
	})
	return le, err
}

// grantStat is the session grant's look at the claim's node: an exists,
// or for a permit the version-checked SetData that writes its slot
// (DESIGN.md, "The slot"), whose Stat serves as well. A BadVersion is
// looked at (changed).
func (l *Locker) grantStat(ctx context.Context, c *claim) (bool, *zk.Stat, error) {
	if !c.meta.slotted {
		return l.exists(ctx, c.path)
	}
	data := encodeData(c.meta)
	stat, err := callFor(ctx, l, 0, ackQuorum, func() (*zk.Stat, error) { return l.conn.Set(c.path, data, c.version) }, nil)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return false, nil, nil
	case errors.Is(err, zk.ErrBadVersion):
		return false, nil, l.changed(ctx, c)
	case err != nil:
		return false, nil, err
	}
	c.version = stat.Version
	return true, stat, nil
}

// sessionLease registers the session lease of c, whose node has stat, if
// that node is on the tracked session and the session's deadline is
// ahead. Otherwise it returns the channel the next confirmation closes.
func (l *Locker) sessionLease(c *claim, stat *zk.Stat) (*lease, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if stat.EphemeralOwner == l.sessID && time.Now().Before(l.deadline) {
		le := l.newLeaseLocked(c, uint64(stat.Czxid), l.sessID)
		if c.waited { // its grant time is not its ctime: the prober writes it
			le.stamp = stat.Ctime + time.Since(c.marked).Milliseconds()
		}
		return le, nil
	}
	return nil, l.fresh
}

// withdraw deletes the node of a claim that did not become a lease (or
// whose grant raced its cancellation: deleting it is the release), and
// every other node carrying its GUID if a create of it was ambiguous.
func (l *Locker) withdraw(c *claim) {
	ctx, cancel := context.WithTimeout(l.stopped, l.cleanupTimeout())
	defer cancel()
	o := c.orphan()
	if c.ambiguous {
		o = orphan{dir: c.dir, guid: c.guid, checked: c.ttl > 0}
	}
	if !l.deleteOrphan(ctx, o) {
		l.addOrphan(o)
	}
}
