package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// Leases for callers outside the node (DESIGN.md, "Client sessions and
// lease keys"): acquired for a client session, or as a keyed TTL lease of
// no client session, always in the stream of the node's default client,
// and held by key. The node keeps no Lease for them: the caller refreshes
// and releases them by key, here or at any other node.

// ErrMoved fails the wait of an AcquireFor whose claim its client session
// took over in another request (it asked for the same name again, here or
// at another node): that request waits in its place.
var ErrMoved = errors.New("node: the client session asked for this lock again in another request")

// errStreamLost: the store no longer knows the stream's session that an
// Acquire was made in; it is made again in the next one.
var errStreamLost = errors.New("node: the request's session is gone")

// grantWaiter is a blocked Acquire for a caller outside the node,
// registered under the seq of its request before the request is proposed.
type grantWaiter struct {
	name    string
	session uint64 // the stream's session the request was made in
	claim   uint64 // set once the Acquire is answered
	owned   bool   // the claim is the stream session's own (a keyed lease of no client session)
	client  uint64 // the client session the claim is for, 0 if owned
	ch      chan fsm.Event
	errc    chan error
}

func (w *grantWaiter) fail(err error) {
	select {
	case w.errc <- err:
	default:
	}
}

// AcquireFor acquires name for client session s and waits for it: a
// session lease of s, or with lock.WithTTL a TTL lease it owns. The grant
// carries the lease's key. If s already has a claim on name (its earlier
// request died with its node, or is still waiting elsewhere), this call
// takes that claim over instead of queueing a second: it answers its
// grant, or waits in its place, and the earlier request fails.
// ErrSessionExpired: the store does not know s.
func (n *Node) AcquireFor(ctx context.Context, s ClientSession, name string, opts ...lock.Option) (Grant, error) {
	return n.def.acquireFor(ctx, &s, name, false, opts)
}

// TryAcquireFor is AcquireFor without waiting: lock.ErrHeld if another
// holds name.
func (n *Node) TryAcquireFor(ctx context.Context, s ClientSession, name string, opts ...lock.Option) (Grant, error) {
	return n.def.acquireFor(ctx, &s, name, true, opts)
}

// AcquireKeyed acquires name as a TTL lease (lock.WithTTL is required) of
// no client session, held by the key of its grant: it lives until it is
// released by key, or its TTL passes without a refresh by key, whatever
// happens to this node.
func (n *Node) AcquireKeyed(ctx context.Context, name string, opts ...lock.Option) (Grant, error) {
	return n.def.acquireFor(ctx, nil, name, false, opts)
}

// TryAcquireKeyed is AcquireKeyed without waiting.
func (n *Node) TryAcquireKeyed(ctx context.Context, name string, opts ...lock.Option) (Grant, error) {
	return n.def.acquireFor(ctx, nil, name, true, opts)
}

// RefreshKey refreshes the lease of name that key names, and returns its
// token and TTL (0: a session lease, which only its session's renewals
// extend). lock.ErrNotHeld: no lease of name has that key.
func (n *Node) RefreshKey(ctx context.Context, name string, key LeaseKey) (Grant, error) {
	res, err := n.byKey(ctx, name, func(req *fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Refresh{Refresh: &fsmpb.Refresh{Req: req, Name: name, Key: key[:]}}}
	})
	if err != nil {
		return Grant{}, fmt.Errorf("refresh %q: %w", name, err)
	}
	return Grant{Name: name, Token: res.GetToken(), Key: key, TTL: time.Duration(res.GetTtlNs())}, nil
}

// ReleaseKey releases the lease of name that key names and returns its
// token. lock.ErrNotHeld: no lease of name has that key.
func (n *Node) ReleaseKey(ctx context.Context, name string, key LeaseKey) (uint64, error) {
	res, err := n.byKey(ctx, name, func(req *fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Release{Release: &fsmpb.Release{Req: req, Name: name, Key: key[:]}}}
	})
	if err != nil {
		return 0, fmt.Errorf("release %q: %w", name, err)
	}
	return res.GetToken(), nil
}

// byKey proposes a Release or Refresh by key; an answer other than OK is
// an error.
func (n *Node) byKey(ctx context.Context, name string, build func(*fsmpb.Request) *fsmpb.Command) (*fsmpb.Result, error) {
	if err := lock.ValidateName(name); err != nil {
		return nil, err
	}
	res, err := n.def.forRequest(ctx, build)
	if err != nil {
		return nil, err
	}
	if res.GetCode() != fsmpb.Code_CODE_OK {
		return nil, stateErr(res.GetCode())
	}
	return res, nil
}

// forRequest is sessionRequest for a command that may name a client
// session: UNKNOWN_SESSION is the client session's answer when the
// stream's session is still known here (the command did nothing), and
// the caller's to report; otherwise the stream's session is gone and the
// command is made again in the next one.
func (c *client) forRequest(ctx context.Context, build func(*fsmpb.Request) *fsmpb.Command) (*fsmpb.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // nothing asked of the store (R5)
	}
	for {
		if err := c.ready.wait(ctx); err != nil {
			return nil, c.noSession(err)
		}
		var req *fsmpb.Request
		res, err := c.request(ctx, func(r *fsmpb.Request) *fsmpb.Command {
			req = r
			return build(r)
		})
		if err != nil {
			return nil, err
		}
		if res.GetCode() != fsmpb.Code_CODE_UNKNOWN_SESSION || c.streamKnown(req.GetSession()) {
			return res, nil
		}
		c.signalLost(req.GetSession())
	}
}

// streamKnown reports whether the state applied here knows session id.
func (c *client) streamKnown(id uint64) bool {
	known := false
	c.n.bridge.read(func(st *fsm.State) { known = st.HasSession(id) })
	return known
}

func (c *client) acquireFor(ctx context.Context, s *ClientSession, name string, try bool, opts []lock.Option) (Grant, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return Grant{}, err
	}
	if s == nil && o.TTL == 0 {
		return Grant{}, fmt.Errorf("%w: a keyed lease of no client session needs a TTL", lock.ErrInvalidOption)
	}
	if err := ctx.Err(); err != nil {
		return Grant{}, fmt.Errorf("acquire %q: %w", name, err) // nothing asked of the store (R5)
	}
	for {
		if err := c.ready.wait(ctx); err != nil {
			return Grant{}, fmt.Errorf("acquire %q: %w", name, c.noSession(err))
		}
		g, err := c.acquireForOnce(ctx, s, name, try, o)
		if errors.Is(err, errStreamLost) && ctx.Err() == nil && !c.isClosed() {
			continue // made again in the next session
		}
		return g, err
	}
}

// acquireForOnce makes one Acquire for s (nil: a keyed lease of the
// stream's own session) in the current session: it registers a grant
// waiter, proposes, and awaits the answer.
func (c *client) acquireForOnce(ctx context.Context, s *ClientSession, name string, try bool, o lock.Options) (Grant, error) {
	var key LeaseKey
	random(key[:])
	c.mu.Lock()
	req, err := c.nextRequest(ctx)
	if err != nil {
		c.mu.Unlock()
		return Grant{}, err
	}
	w := &grantWaiter{name: name, session: req.Session, owned: s == nil, ch: make(chan fsm.Event, 1), errc: make(chan error, 1)}
	if s != nil {
		w.client = s.ID
	}
	c.grants[req.Seq] = w
	c.mu.Unlock()
	a := &fsmpb.Acquire{Req: req, Name: name, Owner: o.Owner, TtlNs: int64(o.TTL), Try: try, Key: key[:]}
	grant := Grant{Name: name}
	if s != nil {
		a.ForSession, a.Secret, grant.Session = s.ID, s.Secret[:], s.ID
	}
	cmd := &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: a}}
	leader := c.n.leaderChanged.changed() // closed by the next leader change
	res, err := c.n.propose(ctx, cmd)
	if err != nil {
		return Grant{}, c.acquireForFailed(ctx, name, req, w, cmd, res, err, leader)
	}
	c.endRequest(req.Seq)
	switch res.GetCode() {
	case fsmpb.Code_CODE_GRANTED, fsmpb.Code_CODE_QUEUED:
	case fsmpb.Code_CODE_UNKNOWN_SESSION:
		c.dropGrant(req.Seq, w)
		if s != nil && c.streamKnown(req.Session) {
			return Grant{}, fmt.Errorf("acquire %q: %w: client session %x", name, ErrSessionExpired, s.ID)
		}
		c.signalLost(req.Session)
		return Grant{}, errStreamLost
	case fsmpb.Code_CODE_MISMATCH:
		c.dropGrant(req.Seq, w)
		return Grant{}, fmt.Errorf("acquire %q: %w", name, mismatchErr(name, shape{}, res))
	default:
		c.dropGrant(req.Seq, w)
		return Grant{}, fmt.Errorf("acquire %q: %w", name, stateErr(res.GetCode()))
	}
	copy(grant.Key[:], res.GetKey()) // a re-attach answers the claim's own key
	return c.awaitGrant(ctx, req.Seq, w, res, try, grant)
}

// awaitGrant is the outcome of an Acquire for a caller outside the node
// (waiter w of seq) that its result res answered GRANTED or QUEUED: the
// grant, when it comes, completes grant.
func (c *client) awaitGrant(ctx context.Context, seq uint64, w *grantWaiter, res *fsmpb.Result, try bool, grant Grant) (Grant, error) {
	// A grant applied before this point is on the waiter already, except
	// one a snapshot covered and a re-attach to a held lease (no Granted
	// event: the lease was granted earlier): reconcileGrant finds both in
	// the state.
	c.n.bridge.read(func(st *fsm.State) {
		c.mu.Lock()
		defer c.mu.Unlock()
		w.claim = res.GetClaim()
		c.reconcileGrant(st, seq, w)
	})
	if res.GetCode() == fsmpb.Code_CODE_QUEUED && try {
		// A try that re-attached to a queued claim: a try leaves none.
		return Grant{}, c.giveUpGrant(grant.Name, seq, w, fmt.Errorf("%w: %q", lock.ErrHeld, grant.Name))
	}
	granted := func(ev fsm.Event) (Grant, error) {
		c.dropGrant(seq, w)
		grant.Token, grant.TTL = ev.Token, ev.TTL
		return grant, nil
	}
	select {
	case ev := <-w.ch:
		return granted(ev)
	case err := <-w.errc:
		select {
		case ev := <-w.ch: // a grant on the waiter wins: its caller owns it
			return granted(ev)
		default:
		}
		c.dropGrant(seq, w)
		return Grant{}, fmt.Errorf("acquire %q: %w", grant.Name, err)
	case <-ctx.Done():
		select {
		case ev := <-w.ch: // as for a Locker, a grant on the waiter wins over an ended ctx
			return granted(ev)
		default:
		}
		return Grant{}, c.giveUpGrant(grant.Name, seq, w, ctx.Err())
	}
}

// acquireForFailed ends the Acquire request cmd (waiter w) whose
// proposal failed with err (res: its result, if it committed but was not
// applied here), withdrawing the claim it may have made, as acquireOnce's
// failure paths do for a Locker, with the same errors (settledErr,
// withdrawnErr). leader is the leader-change signal taken before the
// proposal.
func (c *client) acquireForFailed(ctx context.Context, name string, req *fsmpb.Request, w *grantWaiter, cmd *fsmpb.Command, res *fsmpb.Result, err error, leader <-chan struct{}) error {
	g := gaveUp{name: name, session: req.Session, ttl: true, seq: req.Seq}
	c.dropGrant(req.Seq, w)
	if res != nil { // committed, not applied here
		c.endRequest(req.Seq)
		if code := res.GetCode(); code == fsmpb.Code_CODE_GRANTED || code == fsmpb.Code_CODE_QUEUED {
			g.claim = res.GetClaim()
			return withdrawnErr(name, err, c.cancelClaim(g))
		}
		return fmt.Errorf("acquire %q: %w", name, err)
	}
	if !errors.Is(err, errAmbiguous) {
		c.endRequest(req.Seq)
		return fmt.Errorf("acquire %q: %w", name, err)
	}
	settled, answered := c.resolve(g, settleByKey(cmd)) // ends the request
	return settledErr(ctx, name, fmt.Errorf("acquire %q: %w", name, err), settled, answered, leader)
}

// settleByKey is the command that settles an Acquire for a caller outside
// the node, cmd, whose outcome is unknown: a Release by cmd's key in cmd's
// request. If cmd was applied, the store answers the Release from its
// cache with cmd's result (and resolve withdraws the claim it names);
// otherwise the Release runs now, finds no lease with a key nobody else
// has, and takes the request's place, so cmd can never run. Proposing cmd
// again instead would run it if it never reached the log: for a client
// session that re-attaches to, and resolve would then end, a claim the
// client made since in another request.
func settleByKey(cmd *fsmpb.Command) *fsmpb.Command {
	a := cmd.GetAcquire()
	return &fsmpb.Command{Op: &fsmpb.Command_Release{Release: &fsmpb.Release{Req: a.GetReq(), Name: a.GetName(), Key: a.GetKey()}}}
}

// giveUpGrant withdraws the claim of waiter w (of seq), whose caller gives
// up with why, and returns the caller's error: why, or ErrNoQuorum with it
// if the withdrawal could not reach the store (R5).
func (c *client) giveUpGrant(name string, seq uint64, w *grantWaiter, why error) error {
	claim := c.dropGrant(seq, w)
	g := gaveUp{name: name, claim: claim, session: w.session, ttl: true}
	return withdrawnErr(name, why, claim == 0 || c.cancelClaim(g))
}

// dropGrant forgets waiter w of seq and returns its claim as it stands:
// the granted claim if a grant is left on it, else the claim its result
// named (0 if none, or if it was withdrawn or moved away).
func (c *client) dropGrant(seq uint64, w *grantWaiter) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.grants[seq] == w {
		delete(c.grants, seq)
	}
	select {
	case ev := <-w.ch:
		return ev.Claim
	default:
	}
	if len(w.errc) > 0 {
		return 0 // withdrawn or moved: not this waiter's to cancel
	}
	return w.claim
}

// handleGrant applies an event about the claim of grant waiter w (of
// seq); c.mu held.
func (c *client) handleGrant(seq uint64, w *grantWaiter, ev fsm.Event) {
	switch ev.Kind {
	case fsm.EventGranted:
		select {
		case w.ch <- ev:
		default:
		}
	case fsm.EventWithdrawn:
		if ev.Reason != fsm.ReasonReleased { // not its own Cancel
			delete(c.grants, seq)
			w.fail(grantReasonErr(ev.Reason, w.owned))
		}
	case fsm.EventMoved:
		delete(c.grants, seq)
		w.fail(ErrMoved)
	}
}

// grantReasonErr is why a grant waiter's claim was withdrawn: its client
// session ended (or, for a claim of the stream's own session, that
// session).
func grantReasonErr(r fsm.EndReason, owned bool) error {
	if owned {
		return reasonErr(r)
	}
	return fmt.Errorf("%w: the client session ended (%v)", ErrSessionExpired, r)
}

// reconcileGrant delivers a grant or a withdrawal of w's claim that the
// state shows but no event announced (a snapshot covered it); c.mu held.
func (c *client) reconcileGrant(st *fsm.State, seq uint64, w *grantWaiter) {
	if w.claim == 0 || c.grants[seq] != w || len(w.ch) > 0 {
		return
	}
	li := st.Lock(w.name)
	h, held := li.LeaseOfClaim(w.claim)
	switch {
	case held:
		w.ch <- fsm.Event{Kind: fsm.EventGranted, Name: w.name, Claim: h.Claim, Token: h.Token, TTL: h.TTL, Mode: h.Mode, Slot: h.Slot}
	case !st.Queued(w.name, w.claim):
		delete(c.grants, seq)
		if w.client != 0 && hasClaim(st, w.name, w.client, li) {
			w.fail(fmt.Errorf("%w (seen while this node was catching up)", ErrMoved))
			return
		}
		w.fail(fmt.Errorf("%w: withdrawn while this node was catching up", lock.ErrLost))
	}
}

// hasClaim reports whether session holds or waits for name (li is its
// Lock): a client session's claim that is no longer this waiter's moved
// to another request (one claim per client session and name).
func hasClaim(st *fsm.State, name string, session uint64, li fsm.LockInfo) bool {
	for _, h := range li.Leases() {
		if h.Session == session {
			return true
		}
	}
	for _, q := range st.Queue(name, 0) {
		if q.Session == session {
			return true
		}
	}
	return false
}

// cancelOwnedGrants, as the client closes, withdraws the claims of its
// waiting keyed Acquires (claims of its own session sess) that have no
// grant for their callers yet, and fails those waiters with ErrClosed:
// closing the session ends neither a keyed TTL lease nor a claim granted
// meanwhile (fsm/DESIGN.md, "Decided after review" 8), and nobody would
// ever hold the key. A waiter with a grant on it keeps it for its caller.
// A keyed Acquire still in flight here is not covered: if it commits as
// a grant before the close, that lease is nobody's until its TTL
// (DESIGN.md, "Not done").
func (c *client) cancelOwnedGrants(ctx context.Context, sess uint64) (proposed bool) {
	type cancel struct {
		name       string
		claim, seq uint64
	}
	var todo []cancel
	c.mu.Lock()
	for seq, w := range c.grants {
		if !w.owned || len(w.ch) > 0 {
			continue
		}
		delete(c.grants, seq)
		w.fail(lock.ErrClosed)
		if w.claim != 0 {
			c.seq++
			todo = append(todo, cancel{w.name, w.claim, c.seq})
		}
	}
	c.mu.Unlock()
	for _, x := range todo {
		_, err := c.n.propose(ctx, &fsmpb.Command{Op: &fsmpb.Command_Cancel{Cancel: &fsmpb.Cancel{
			Req: &fsmpb.Request{Session: sess, Seq: x.seq}, Name: x.name, Claim: x.claim,
		}}})
		if err != nil {
			c.n.log.Warn("withdrawing a keyed acquire as the node stops failed; if granted, it is held until its TTL",
				"name", x.name, "error", err)
		}
	}
	return len(todo) > 0
}

// failGrants fails every grant waiter still registered; c.mu not held.
func (c *client) failGrants(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for seq, w := range c.grants {
		w.fail(err)
		delete(c.grants, seq)
	}
}
