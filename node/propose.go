package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
	"github.com/quorumlock/quorumlock/node/nodepb"
)

// Retry pacing while no leader is known or the leader is changing: an
// election takes about one election timeout, so start fast and back off to
// a fraction of it.
const (
	retryMin = 5 * time.Millisecond
	retryMax = 200 * time.Millisecond
)

var (
	// errAmbiguous marks a failed propose of which some attempt may still
	// commit (a leader lost its leadership, or a forward's reply was lost).
	errAmbiguous = errors.New("node: outcome unknown")
	// errNotLeader is the retryable "ask someone else" of one attempt.
	errNotLeader = errors.New("node: not the leader")
	// errFatal marks errors that no retry can fix (a malformed request, a
	// limit, an unsupported command).
	errFatal = errors.New("node: rejected")
	// errBehind marks an attempt the store answered (committed, or gave a
	// read index) but that ctx ended while this node was applying up to
	// it: the store was reached (R5).
	errBehind = errors.New("node: not yet applied here")
	// errCutShort marks a forward that ctx ended while it was in flight,
	// unanswered: a slow reply and an unreachable leader look alike (R5).
	errCutShort = errors.New("node: forward unanswered when ctx ended")
	// errOnlyCutShort marks retry's ErrNoQuorum when every sign of an
	// unreachable store was a forward cut short (errCutShort): a caller
	// that can settle its request may still prove the store reachable.
	errOnlyCutShort = errors.New("node: only a forward cut short by ctx went unanswered")
)

// propose commits cmd through the leader, wherever it is, and returns its
// result once this node has applied the entry too (so local events, such
// as a grant to a local waiter, have fired). While no leader is known or
// the leader cannot commit, it retries with backoff until ctx ends; a
// retried command carries the same (session, seq) and applies once.
//
// Errors: lock.ErrClosed after Close; lock.ErrNoQuorum joined with ctx's
// error when ctx ended before a commit; errAmbiguous is also wrapped when
// an attempt may still commit. If the entry committed but ctx ended (or
// the node stopped) before this node applied it, the result comes with
// the error: the outcome is known, only its local events are not.
func (n *Node) propose(ctx context.Context, cmd *fsmpb.Command) (*fsmpb.Result, error) {
	var res *fsmpb.Result
	ambiguous := false
	err := n.retry(ctx, func() error {
		r, index, err := n.proposeOnce(ctx, cmd)
		if err != nil {
			ambiguous = ambiguous || errors.Is(err, errAmbiguous)
			return err
		}
		res = r
		return n.waitAppliedHere(ctx, index)
	})
	if err != nil && ambiguous && !errors.Is(err, errAmbiguous) {
		err = fmt.Errorf("%w: %w", errAmbiguous, err)
	}
	return res, err
}

// retry runs attempt until it succeeds, fails for good (lock.ErrClosed,
// errFatal, fsm.ErrTooLarge), ctx ends, or the node closes; between
// attempts it backs off from retryMin to retryMax, and retries at once when
// the node learns of a leader change. This is the leader-hold of every call
// that needs the leader.
//
// When ctx ends, the error is lock.ErrNoQuorum joined with ctx's error and
// the last attempt's if the store could not be reached: some attempt
// failed for another reason than ctx (no leader, a connection failure,
// leadership lost), or was in flight at the leader without an answer
// (unreached); it also wraps errOnlyCutShort if every such attempt was a
// forward in flight (errCutShort). Otherwise — ctx had ended before
// anything was sent, or ended an attempt that had not left this node — it
// is ctx's error alone (R5).
func (n *Node) retry(ctx context.Context, attempt func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	backoff := retryMin
	// unreachable: some attempt says the store could not be reached;
	// cutOnly: each such attempt was a forward cut short by ctx.
	unreachable, cutOnly := false, true
	for {
		changed := n.leaderChanged.changed()
		err := attempt()
		if err == nil || errors.Is(err, lock.ErrClosed) || errors.Is(err, errFatal) || errors.Is(err, fsm.ErrTooLarge) {
			return err
		}
		if unreached(err) {
			unreachable, cutOnly = true, cutOnly && errors.Is(err, errCutShort)
		}
		wait := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			wait.Stop()
			switch {
			case !unreachable:
				return ctx.Err()
			case cutOnly:
				return fmt.Errorf("%w: %w: %w (last attempt: %w)", lock.ErrNoQuorum, errOnlyCutShort, ctx.Err(), err)
			}
			return fmt.Errorf("%w: %w (last attempt: %w)", lock.ErrNoQuorum, ctx.Err(), err)
		case <-n.stop:
			wait.Stop()
			return lock.ErrClosed
		case <-changed:
			// A new leader (or none): try it now, and back off afresh.
			wait.Stop()
			backoff = retryMin
			continue
		case <-wait.C:
		}
		backoff = min(2*backoff, retryMax)
	}
}

// unreached reports whether an attempt's error says the store could not be
// reached: anything but a ctx error of an attempt that ctx ended before it
// left this node, or after the store answered it (errBehind: ctx ended
// while this node applied up to the answer). A forward cut short by ctx is
// marked errAmbiguous (callAt): the store did not answer.
func unreached(err error) bool {
	ctxOnly := errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	if !ctxOnly || errors.Is(err, lock.ErrNoQuorum) {
		return true
	}
	return errors.Is(err, errAmbiguous) && !errors.Is(err, errBehind)
}

// atLeader runs local if this node is the leader, else remote, which asks
// the leader this node knows over RPC. A single node that is not the leader
// (it is stepping down or stopping) has no one to ask: errNotLeader.
func (n *Node) atLeader(local, remote func() error) error {
	if n.raft.State() == raft.Leader {
		return local()
	}
	if n.trans == nil {
		return errNotLeader
	}
	return remote()
}

// proposeOnce makes one attempt: locally if this node leads, else by
// forwarding to the leader it knows.
func (n *Node) proposeOnce(ctx context.Context, cmd *fsmpb.Command) (res *fsmpb.Result, index uint64, err error) {
	err = n.atLeader(func() error {
		res, index, err = n.proposeLocal(ctx, cmd)
		return err
	}, func() error {
		resp, err := n.call(ctx, &nodepb.Request{Op: &nodepb.Request_Propose{Propose: &nodepb.Propose{Command: cmd}}})
		if err != nil {
			return err
		}
		if resp.GetResult() == nil {
			return fmt.Errorf("%w: propose reply without result", errFatal)
		}
		res, index = resp.GetResult(), resp.GetIndex()
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return res, index, nil
}

// proposeLocal is the leader's half of propose (and of a forwarded
// Propose), and the only way into the log: it stamps, validates, encodes
// and commits cmd on this node (DESIGN.md, "What enters the log").
func (n *Node) proposeLocal(ctx context.Context, cmd *fsmpb.Command) (*fsmpb.Result, uint64, error) {
	cmd = proto.CloneOf(cmd)
	cmd.StampUnixNano = n.wallNow().UnixNano()
	if err := fsm.Validate(cmd); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errFatal, err) // never enters the log
	}
	if err := n.admit(cmd); err != nil {
		return nil, 0, err
	}
	if err := n.supported(cmd); err != nil {
		return nil, 0, err
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errFatal, err) // no retry encodes it either
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	start := time.Now()
	f, err := n.commit(data, timeout)
	n.metrics.Proposed(metrics.OutcomeOf(err), time.Since(start))
	if err != nil {
		switch {
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, 0, fmt.Errorf("%w: %w", lock.ErrClosed, err)
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout),
			errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return nil, 0, fmt.Errorf("%w: %w", errNotLeader, err) // never appended
		default:
			return nil, 0, fmt.Errorf("%w: %w", errAmbiguous, err) // ErrLeadershipLost and the like
		}
	}
	er, ok := f.Response().(entryResult)
	if !ok || er.res == nil {
		return nil, 0, fmt.Errorf("%w: unexpected apply response %T", errFatal, f.Response())
	}
	return er.res, f.Index(), nil
}

// admit checks cmd against the limits on the state this node has applied
// (DESIGN.md, "Limits"): an error wrapping errFatal and lock.ErrLimit if
// it would grow the state past one.
func (n *Node) admit(cmd *fsmpb.Command) error {
	var err error
	n.bridge.read(func(st *fsm.State) { err = st.Admit(cmd, n.cfg.Limits.fsm()) })
	if err != nil {
		return fmt.Errorf("%w: %w: %w", errFatal, lock.ErrLimit, err)
	}
	return nil
}

// commit is raft.Apply and the wait for its future, under commitMu (read):
// shutdown waits for it before it shuts Raft down.
func (n *Node) commit(data []byte, timeout time.Duration) (raft.ApplyFuture, error) {
	n.commitMu.RLock()
	defer n.commitMu.RUnlock()
	f := n.raft.Apply(data, timeout)
	return f, f.Error()
}

// waitAppliedHere waits until this node has applied index, so that the
// entry's local events (a grant to a waiter here) have fired before the
// caller looks for them. It gives up when ctx ends (the node is cut off
// from the leader); the caller treats that as an unknown outcome.
func (n *Node) waitAppliedHere(ctx context.Context, index uint64) error {
	if err := n.bridge.waitAppliedOr(ctx, n.stop, index); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w: committed at %d: %w", errAmbiguous, errBehind, index, ctx.Err())
		}
		return lock.ErrClosed
	}
	return nil
}
