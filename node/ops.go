package node

import (
	"context"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// Revoke and Adopt, the caller's side (DESIGN.md, "Operating a lock"). The
// holder's side is in events.go (client.revoked, client.adoptedAway), the
// leader's grace timer in expirer.go.

// Revoke implements lock.Revoker: it proposes Revoke{name, token} and waits
// until this node has applied the end of that lease: its holder released
// it, or the leader ended it after the grace.
func (c *client) Revoke(ctx context.Context, name string, token uint64) error {
	if err := lock.ValidateName(name); err != nil {
		return err
	}
	if err := lock.ValidateToken(token); err != nil {
		return err
	}
	op := fmt.Sprintf("revoke %q token %d", name, token)
	res, _, err := c.sessionRequest(ctx, func(req *fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Revoke{Revoke: &fsmpb.Revoke{Req: req, Name: name, Token: token}}}
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if res.GetCode() != fsmpb.Code_CODE_OK {
		return opErr(op, res.GetCode(), name, 2)
	}
	err = c.n.bridge.waitUntil(ctx, c.stop, func(_ uint64, st *fsm.State) bool {
		_, held := st.Lock(name).Lease(token)
		return !held
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%s: waiting for the lease to end (the revoke stays in effect): %w", op, ctx.Err())
	default:
		return lock.ErrClosed
	}
}

// Adopt implements lock.Adopter: it proposes Adopt{name, token} and returns
// the lease, now held by this client's session, with its token and TTL. Its
// local deadline counts from the send time, as after a Refresh.
func (c *client) Adopt(ctx context.Context, name string, token uint64) (lock.Lease, error) {
	if err := lock.ValidateName(name); err != nil {
		return nil, err
	}
	if err := lock.ValidateToken(token); err != nil {
		return nil, err
	}
	op := fmt.Sprintf("adopt %q token %d", name, token)
	var sent time.Time
	res, req, err := c.sessionRequest(ctx, func(req *fsmpb.Request) *fsmpb.Command {
		sent = time.Now()
		return &fsmpb.Command{Op: &fsmpb.Command_Adopt{Adopt: &fsmpb.Adopt{Req: req, Name: name, Token: token}}}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if res.GetCode() != fsmpb.Code_CODE_OK {
		return nil, opErr(op, res.GetCode(), name, 2)
	}
	return c.adopted(op, name, token, req.GetSession(), time.Duration(res.GetTtlNs()), sent)
}

// adopted registers the lease that Adopt got for session, under the
// bridge's read lock: an event about it applied after this finds it, and
// the state shows one applied before (the lease ended, or was adopted
// again, before Adopt returned: ErrNotHeld, the store's answer at that
// point). A lease revoked before Adopt returned is this session's to
// acknowledge: it is released by token at once, as a holder does (else
// the revoke would wait out its grace), and Adopt answers ErrNotHeld and
// ErrRevoked.
func (c *client) adopted(op, name string, token, session uint64, ttl time.Duration, sent time.Time) (lock.Lease, error) {
	var l *lease
	var typ fsmpb.LockType
	var err error
	c.n.bridge.read(func(st *fsm.State) {
		named := st.Lock(name)
		li, held := named.Lease(token)
		if !held || li.Session != session {
			err = fmt.Errorf("%s: %w: it ended or changed hands before Adopt returned", op, lock.ErrNotHeld)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed {
			err = lock.ErrClosed // Close ended the session, and the lease with it
			return
		}
		l = c.newLease(name, token, session, ttl, sent)
		l.slot, typ = li.Slot, named.Type
		if li.Revoked {
			c.revoked(l)
			l, err = nil, fmt.Errorf("%s: %w: %w: revoked before Adopt returned", op, lock.ErrNotHeld, lock.ErrRevoked)
			return
		}
		c.n.metrics.Granted(lock.KindTTL, 0) // the lease is this client's from now on
	})
	if err != nil {
		return nil, err
	}
	return shaped(l, typ), nil
}

// FloorToken implements lock.TokenFloorer: it proposes FloorToken{name,
// floor} under the client's session (DESIGN.md, "Token floors"). When it
// returns nil the entry has applied, and every later grant of name, at a
// later index, has a token above floor. The store keeps one floor for all
// names, so the grants of every other name are raised too, as the
// contract allows; tokens of each name still strictly increase.
func (c *client) FloorToken(ctx context.Context, name string, floor uint64) error {
	if err := lock.ValidateName(name); err != nil {
		return err
	}
	if err := lock.ValidateTokenFloor(floor); err != nil {
		return err
	}
	op := fmt.Sprintf("floor the tokens of %q at %d", name, floor)
	res, _, err := c.sessionRequest(ctx, func(req *fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_FloorToken{FloorToken: &fsmpb.FloorToken{Req: req, Name: name, Floor: floor}}}
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if res.GetCode() != fsmpb.Code_CODE_OK {
		return opErr(op, res.GetCode(), name, 4)
	}
	return nil
}

// sessionRequest proposes the command build makes under a live session of
// c, waiting for one as Acquire does, and again under the next session if
// the store no longer knows the one it was made under. It returns the
// result and the request it answers.
func (c *client) sessionRequest(ctx context.Context, build func(*fsmpb.Request) *fsmpb.Command) (*fsmpb.Result, *fsmpb.Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err // nothing asked of the store (R5)
	}
	for {
		if err := c.ready.wait(ctx); err != nil {
			return nil, nil, c.noSession(err)
		}
		var req *fsmpb.Request
		res, err := c.request(ctx, func(r *fsmpb.Request) *fsmpb.Command {
			req = r
			return build(r)
		})
		if err != nil {
			return nil, nil, err
		}
		if res.GetCode() != fsmpb.Code_CODE_UNKNOWN_SESSION {
			return res, req, nil
		}
		c.signalLost(req.GetSession())
	}
}

// opErr is the error of a Revoke, Adopt or FloorToken, which needs
// protocol level, that the state machine answered other than OK.
func opErr(op string, code fsmpb.Code, name string, level int) error {
	if code == fsmpb.Code_CODE_UNSUPPORTED {
		return fmt.Errorf("%s: %w: the cluster has not committed protocol level %d yet (a voter of an older build, or an upgrade not yet complete; see Stats().Protocol)",
			op, lock.ErrUnsupported, level)
	}
	return fmt.Errorf("%s: %w", op, codeErr(code, name))
}
