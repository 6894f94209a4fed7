package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// pending is the hand-over between a store call and its caller.
type pending struct {
	mu   sync.Mutex
	gone bool // the caller stopped waiting
	done chan error
}

// ack says what a call's answer proves.
type ack int

const (
	// ackNone: a read, answered by whichever server the client is on.
	ackNone ack = iota
	// ackSession: a sync passes through the leader, so its answer confirms
	// the session; but a leader that has lost its quorum and not noticed
	// yet still answers it, so it does not prove the store can commit.
	ackSession
	// ackQuorum: a write, committed by a quorum: it confirms the session
	// and that the store could commit when it was sent (R5's "reachable").
	ackQuorum
)

// call runs fn, one blocking go-zookeeper call, and returns its error, or
// ctx's error if ctx ends first. If fn completes after the caller left,
// late (if not nil) gets fn's error, in the call's goroutine. kind says
// what fn's answer proves.
func (l *Locker) call(ctx context.Context, kind ack, fn func() error, late func(error)) error {
	return l.callGrace(ctx, 0, kind, fn, late)
}

// callGrace is call, but when ctx ends first it still waits up to grace for
// fn's result, and returns that result if it comes. Creates use it so that
// a node whose create raced a cancellation is known to the caller, who
// deletes it before returning.
func (l *Locker) callGrace(ctx context.Context, grace time.Duration, kind ack, fn func() error, late func(error)) error {
	if err := ctx.Err(); err != nil {
		return ctxError(ctx)
	}
	tr := traceOf(ctx)
	if tr != nil {
		tr.sent.Store(true)
	}
	if ctx.Done() == nil {
		return tr.note(l.exec(kind, fn))
	}
	p := &pending{done: make(chan error, 1)}
	l.calls.Add(1)
	go func() {
		defer l.calls.Done()
		err := l.exec(kind, fn)
		p.mu.Lock()
		gone := p.gone
		if !gone {
			p.done <- err
		}
		p.mu.Unlock()
		if gone && late != nil {
			late(err)
		}
	}()
	select {
	case err := <-p.done:
		return tr.note(err)
	case <-ctx.Done():
		if grace > 0 {
			t := time.NewTimer(grace)
			select {
			case err := <-p.done:
				t.Stop()
				return tr.note(err)
			case <-t.C:
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		select {
		case err := <-p.done:
			return tr.note(err)
		default:
		}
		p.gone = true
		if tr != nil {
			tr.unanswered.Store(true)
		}
		return ctxError(ctx)
	}
}

// note records in tr (if not nil) whether err, a request's result, is no
// answer of the store, and returns err.
func (tr *trace) note(err error) error {
	if tr != nil && retryable(err) {
		tr.unanswered.Store(true)
	}
	return err
}

// exec runs fn and records what its answer proves (kind).
func (l *Locker) exec(kind ack, fn func() error) error {
	before, sent := l.conn.SessionID(), time.Now()
	err := fn()
	switch {
	case kind != ackNone && answered(err):
		l.ack(sent, before, l.conn.SessionID(), kind == ackQuorum)
	case retryable(err):
		l.mu.Lock()
		l.lastCause = err
		l.mu.Unlock()
	}
	return err
}

// answered reports whether err is a reply of the server (so the request
// reached it), as opposed to a connection-level failure.
func answered(err error) bool {
	return err == nil || errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrNodeExists) ||
		errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNotEmpty)
}

// ctxError is ctx's error, with its cause if that says more; it satisfies
// errors.Is(err, ctx.Err()).
func ctxError(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || errors.Is(cause, err) {
		return err
	}
	return fmt.Errorf("%w: %w", err, cause)
}

// deleteNode deletes path, retrying after connection-level failures until
// ctx ends. A node that is already gone is no error.
func (l *Locker) deleteNode(ctx context.Context, path string) error {
	_, err := l.deleteOwn(ctx, path)
	return err
}

// deleteOwn is deleteNode that also reports whether the node was gone
// before: NoNode answered with no ambiguous attempt before it (after one,
// NoNode may be that attempt's own delete).
func (l *Locker) deleteOwn(ctx context.Context, path string) (gone bool, err error) {
	ambiguous := false
	err = retry(ctx, func() error {
		err := l.call(ctx, ackQuorum, func() error { return l.conn.Delete(path, -1) }, nil)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			gone = !ambiguous
			return nil
		case retryable(err):
			ambiguous = true
		}
		return err
	})
	return gone, err
}

// children lists dir's claim nodes in sequence order (one attempt).
func (l *Locker) children(ctx context.Context, dir string) ([]child, error) {
	var names []string
	err := l.call(ctx, ackNone, func() (err error) { names, _, err = l.conn.Children(dir); return err }, nil)
	if err != nil {
		return nil, err
	}
	return sortedChildren(names), nil
}

// exists reports whether path exists, and its Stat (one attempt).
func (l *Locker) exists(ctx context.Context, path string) (ok bool, stat *zk.Stat, err error) {
	err = l.call(ctx, ackNone, func() (err error) { ok, stat, err = l.conn.Exists(path); return err }, nil)
	return ok, stat, err
}
