package node

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node/nodepb"
)

// Client sessions and lease keys (DESIGN.md, "Client sessions and lease
// keys"): sessions a caller outside the cluster opens, renews and closes
// at any node, and leases it refreshes and releases at any node by key.

// ClientSession is the handle of a client session: its ID, which is
// public (Inspect and List name it), and its secret, which proves the
// right to use it. Its String form is what lockd hands out.
type ClientSession struct {
	ID     uint64
	Secret [fsm.KeyLen]byte
}

// String is "<id: 16 hex digits>.<secret in unpadded base64url>"; the ID
// part is the holder ID that Inspect and List report.
func (s ClientSession) String() string {
	return holderID(s.ID) + "." + base64.RawURLEncoding.EncodeToString(s.Secret[:])
}

// ParseClientSession parses the String form; an error wraps
// lock.ErrInvalidOption.
func ParseClientSession(v string) (ClientSession, error) {
	id, secret, ok := strings.Cut(v, ".")
	n, err := strconv.ParseUint(id, 16, 64)
	var s ClientSession
	if !ok || err != nil || n == 0 || len(id) > 16 || decodeKey(secret, s.Secret[:]) != nil {
		return ClientSession{}, fmt.Errorf("%w: client session: want <id hex>.<secret base64url>", lock.ErrInvalidOption)
	}
	s.ID = n
	return s, nil
}

// LeaseKey names one lease: whoever has it may refresh or release that
// lease at any node, for as long as the lease lives in the store.
type LeaseKey [fsm.KeyLen]byte

// String is the key in unpadded base64url.
func (k LeaseKey) String() string { return base64.RawURLEncoding.EncodeToString(k[:]) }

// ParseLeaseKey parses the String form; an error wraps
// lock.ErrInvalidOption.
func ParseLeaseKey(v string) (LeaseKey, error) {
	var k LeaseKey
	if err := decodeKey(v, k[:]); err != nil {
		return LeaseKey{}, fmt.Errorf("%w: lease key: want %d bytes in base64url", lock.ErrInvalidOption, fsm.KeyLen)
	}
	return k, nil
}

// decodeKey decodes a key or secret: unpadded base64url, strict (one
// spelling per value: the unused bits of the last character are zero).
func decodeKey(v string, into []byte) error {
	b, err := base64.RawURLEncoding.Strict().DecodeString(v)
	if err != nil || len(b) != len(into) {
		return errors.New("bad key")
	}
	copy(into, b)
	return nil
}

// Grant is a lease handed to a caller outside the node: it holds it by
// Key. Session is the client session that owns it (0 for a keyed TTL lease
// of no client session); TTL is 0 for a session lease.
type Grant struct {
	Name    string
	Token   uint64
	Key     LeaseKey
	TTL     time.Duration
	Session uint64
}

// random fills a value from crypto/rand (which does not fail on the
// platforms Go supports).
func random(b []byte) {
	_, _ = rand.Read(b)
}

// OpenClientSession opens a client session with ttl (in
// [fsm.MinSessionTTL, fsm.MaxSessionTTL]) labelled owner. The caller must
// renew it (RenewClientSession, at any node) within every ttl, or the
// store expires it and ends its session leases. It needs every voter on a
// build of protocol 3 (ErrUnsupported).
func (n *Node) OpenClientSession(ctx context.Context, ttl time.Duration, owner string) (ClientSession, error) {
	if ttl < fsm.MinSessionTTL || ttl > fsm.MaxSessionTTL {
		return ClientSession{}, fmt.Errorf("%w: session TTL %v outside [%v, %v]", lock.ErrInvalidOption, ttl, fsm.MinSessionTTL, fsm.MaxSessionTTL)
	}
	if _, err := lock.NewOptions(lock.WithOwner(owner)); err != nil {
		return ClientSession{}, err
	}
	if err := ctx.Err(); err != nil {
		return ClientSession{}, err
	}
	for {
		s := ClientSession{ID: newSessionID()}
		random(s.Secret[:])
		res, err := n.propose(ctx, &fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
			Req: &fsmpb.Request{Session: s.ID}, TtlNs: int64(ttl), Node: n.cfg.ID, Secret: s.Secret[:], Owner: owner,
		}}})
		if err != nil {
			return ClientSession{}, fmt.Errorf("node: open client session: %w", err)
		}
		switch res.GetCode() {
		case fsmpb.Code_CODE_OK:
			return s, nil
		case fsmpb.Code_CODE_HELD:
			continue // the ID is taken: another
		default:
			return ClientSession{}, fmt.Errorf("node: open client session: %w", stateErr(res.GetCode()))
		}
	}
}

// RenewClientSession renews s at the leader, which checks its secret,
// and returns its TTL: the caller may count on the session until the time
// it sent this call plus the TTL. ErrSessionExpired: the store does not
// know s (expired, closed, never opened, or not this secret). An error
// wrapping lock.ErrNoQuorum: no leader acknowledged it within ctx.
func (n *Node) RenewClientSession(ctx context.Context, s ClientSession) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	gone := false
	var ttl time.Duration
	err := n.retry(ctx, func() error {
		out, t, err := n.renewOnce(ctx, s.ID, s.Secret[:])
		switch {
		case out == renewed:
			ttl = t
			return nil
		case out == renewGone:
			gone = true
			return fmt.Errorf("%w: %w", errFatal, ErrSessionExpired)
		case err == nil:
			err = errors.New("node: the leader did not acknowledge the keep-alive")
		}
		return err
	})
	if gone {
		return 0, fmt.Errorf("%w: client session %x", ErrSessionExpired, s.ID)
	}
	if err != nil {
		return 0, fmt.Errorf("node: renew client session: %w", err)
	}
	return ttl, nil
}

// CloseClientSession closes s: the store ends every lease of s and
// withdraws its queued claims. ErrSessionExpired: the store does not know
// s.
func (n *Node) CloseClientSession(ctx context.Context, s ClientSession) error {
	res, err := n.def.forRequest(ctx, func(req *fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{
			Req: req, ForSession: s.ID, Secret: s.Secret[:],
		}}}
	})
	if err != nil {
		return fmt.Errorf("node: close client session: %w", err)
	}
	if res.GetCode() != fsmpb.Code_CODE_OK {
		return fmt.Errorf("node: close client session %x: %w", s.ID, stateErr(res.GetCode()))
	}
	return nil
}

// renewal is the leader's answer to a keep-alive.
type renewal int

const (
	renewFailed renewal = iota // not acknowledged: no leader, no quorum, ctx
	renewed                    // the timer was reset and leadership confirmed
	renewGone                  // the session will never be renewed (unknown, wrong secret, expiring)
)

// renewOnce sends one keep-alive for session id (with the secret of a
// client session) to the leader, wherever it is; renewed, it returns the
// session's TTL.
func (n *Node) renewOnce(ctx context.Context, id uint64, secret []byte) (out renewal, ttl time.Duration, err error) {
	err = n.atLeader(func() error {
		out, ttl = n.ackKeepAlive(ctx, id, secret)
		return nil
	}, func() error {
		resp, err := n.call(ctx, &nodepb.Request{Op: &nodepb.Request_KeepAlive{KeepAlive: &nodepb.KeepAlive{Session: id, Secret: secret}}})
		switch {
		case err != nil:
		case resp.GetRenewed():
			out, ttl = renewed, time.Duration(resp.GetTtlNs())
		case resp.GetGone():
			out = renewGone
		}
		return err
	})
	return out, ttl, err
}

// stateErr is the error of a result code a client-session call did not
// expect.
func stateErr(code fsmpb.Code) error {
	switch code {
	case fsmpb.Code_CODE_UNKNOWN_SESSION:
		return ErrSessionExpired
	case fsmpb.Code_CODE_UNSUPPORTED:
		return ErrUnsupported
	case fsmpb.Code_CODE_NOT_HELD:
		return lock.ErrNotHeld
	case fsmpb.Code_CODE_HELD:
		return lock.ErrHeld
	case fsmpb.Code_CODE_INVALID:
		return fmt.Errorf("%w: rejected by the state machine", lock.ErrInvalidOption)
	default:
		return fmt.Errorf("node: unexpected result %s", code)
	}
}

// ClientSessionInfo describes a client session: what anyone may see (its
// ID is public, its secret never leaves the store).
type ClientSessionInfo struct {
	ID    uint64
	Owner string
	TTL   time.Duration
	Node  string // the node it was opened through
}

// ClientSessionInfo reads client session id, linearizably.
// ErrSessionExpired: there is no such client session.
func (n *Node) ClientSessionInfo(ctx context.Context, id uint64) (ClientSessionInfo, error) {
	if err := n.readBarrier(ctx); err != nil {
		return ClientSessionInfo{}, err
	}
	var info fsm.SessionInfo
	var ok bool
	n.bridge.read(func(st *fsm.State) { info, ok = st.Session(id) })
	if !ok || !info.Client {
		return ClientSessionInfo{}, fmt.Errorf("%w: client session %s", ErrSessionExpired, holderID(id))
	}
	return ClientSessionInfo{ID: id, Owner: info.Owner, TTL: info.TTL, Node: info.Node}, nil
}

// ListClientSessions lists every client session, by ID, linearizably.
func (n *Node) ListClientSessions(ctx context.Context) ([]ClientSessionInfo, error) {
	if err := n.readBarrier(ctx); err != nil {
		return nil, err
	}
	var out []ClientSessionInfo
	n.bridge.read(func(st *fsm.State) {
		for _, s := range st.Sessions() {
			if s.Client {
				out = append(out, ClientSessionInfo{ID: s.ID, Owner: s.Owner, TTL: s.TTL, Node: s.Node})
			}
		}
	})
	return out, nil
}
