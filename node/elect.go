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

// Elections (DESIGN.md, "Elections, semaphores and read-write locks"): a
// term is an election's lease, won through the mutex's path (acquire);
// Leader is Inspect's read; Observe is in observe.go.

// term is a leadership won by Campaign (or adopted).
type term struct{ *lease }

// Campaign implements lock.Elector.
func (c *client) Campaign(ctx context.Context, election, value string, opts ...lock.Option) (lock.Term, error) {
	if err := lock.ValidateValue(value); err != nil {
		return nil, fmt.Errorf("campaign %q: %w", election, err)
	}
	l, err := c.measured(ctx, election, false, shape{typ: fsmpb.LockType_LOCK_TYPE_ELECTION, value: value}, opts)
	if err != nil {
		return nil, err
	}
	return &term{l}, nil
}

// Release implements lock.Lease: it resigns. The term ends here
// (lock.ErrReleased, Done closed) before the release is proposed, so no
// replica can elect the next leader while this one still trusts its term
// (lock.Term). A release that does not reach the store within ctx or
// cleanupTimeout goes on in the background, by token, until the store
// answers or the Locker closes; the caller then gets why it did not reach
// it.
func (t *term) Release(ctx context.Context) error {
	l := t.lease
	l.c.mu.Lock()
	if l.Ended() {
		l.c.mu.Unlock()
		return l.endedErr()
	}
	l.end(lock.ErrReleased)
	l.c.mu.Unlock()
	// The term is over here: what is left is the store's side, a clean-up,
	// which an unreachable store holds up no longer than cleanupTimeout
	// whatever ctx (the lease's end no longer bounds the wait, as it does
	// a mutex's Release).
	rctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	res, err := l.do(rctx, l.releaseCmd, true)
	switch {
	case err == nil && res.GetCode() == fsmpb.Code_CODE_OK:
		l.cleaning.Store(true) // the store let it go
		return nil
	case err == nil && res.GetCode() == fsmpb.Code_CODE_NOT_HELD:
		l.cleaning.Store(true)
		return l.NotHeld("the store had ended the term before the resign")
	case errors.Is(err, errEnded):
		return nil // another Release of the term was answered: the token is let go
	}
	l.releaseInStore()
	if err == nil {
		err = codeErr(res.GetCode(), l.Name())
	}
	return fmt.Errorf("resign %q token %d: %w (the release goes on in the background)", l.Name(), l.Token(), err)
}

// Proclaim implements lock.Term: it proposes Proclaim{name, token, value}
// under the client's session, as Refresh proposes its renewal, and returns
// once the store answered, ctx ended, or the term ended (whatever ctx).
func (t *term) Proclaim(ctx context.Context, value string) error {
	if err := lock.ValidateValue(value); err != nil {
		return fmt.Errorf("proclaim %q: %w", t.Name(), err)
	}
	if t.Ended() {
		return t.endedErr()
	}
	res, err := t.do(ctx, func(req *fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Proclaim{Proclaim: &fsmpb.Proclaim{
			Req: req, Name: t.Name(), Token: t.Token(), Value: value,
		}}}
	}, false)
	return t.finish(res, err)
}

// Leader implements lock.Elector. It is linearizable as Inspect is: a read
// index from the leader, then this node's state once it has applied that
// far.
func (c *client) Leader(ctx context.Context, election string) (lock.LeaderInfo, error) {
	if err := lock.ValidateName(election); err != nil {
		return lock.LeaderInfo{}, err
	}
	if c.isClosed() {
		return lock.LeaderInfo{}, lock.ErrClosed
	}
	if err := c.n.readBarrier(ctx); err != nil {
		return lock.LeaderInfo{}, fmt.Errorf("leader of %q: %w", election, err)
	}
	var li fsm.LockInfo
	var info lock.LeaderInfo
	c.n.bridge.readAges(func(st *fsm.State, a *ages) {
		li = st.Lock(election)
		info = leaderInfo(li, a, time.Now(), c.n.wallNow())
	})
	switch {
	case li.Held && li.Type != fsmpb.LockType_LOCK_TYPE_ELECTION:
		return lock.LeaderInfo{}, fmt.Errorf("leader of %q: %w: it is %s, not an election",
			election, lock.ErrInvalidOption, typeName(li.Type, uint32(li.Limit)))
	case !info.Elected():
		return lock.LeaderInfo{}, fmt.Errorf("leader of %q: %w", election, lock.ErrNoLeader)
	}
	return info, nil
}

// leaderInfo is the election state that li shows: its term, or an empty
// seat if nobody holds it or it is another type (lock.Elector.Observe).
// Since counts as Inspect's does (ages).
func leaderInfo(li fsm.LockInfo, a *ages, now, wall time.Time) lock.LeaderInfo {
	info := lock.LeaderInfo{Election: li.Name}
	if !li.Held || li.Type != fsmpb.LockType_LOCK_TYPE_ELECTION {
		return info
	}
	info.Token, info.Value, info.Holder = li.Token, li.Value, holderID(li.Session)
	info.Since = a.since(li.Name, li.Token, li.GrantedUnixNano, now, wall)
	return info
}

// shaped is the lease l as the contract's type for its name's type: a
// term of an election, a permit of a semaphore (Adopt).
func shaped(l *lease, typ fsmpb.LockType) lock.Lease {
	switch typ {
	case fsmpb.LockType_LOCK_TYPE_ELECTION:
		return &term{l}
	case fsmpb.LockType_LOCK_TYPE_SEMAPHORE:
		return permit{l}
	}
	return l
}
