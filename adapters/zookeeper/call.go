package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// reply is the outcome of one store call: fn's value and error.
type reply[T any] struct {
	v   T
	err error
}

// pending is the hand-over between a store call and its caller.
type pending[T any] struct {
	mu   sync.Mutex
	gone bool // the caller stopped waiting
	done chan reply[T]
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
// ctx's error if ctx ends first. kind says what fn's answer proves. fn
// must write no variable of its caller: when ctx ends first the caller
// returns while fn still runs. A call that yields values uses callFor,
// which hands them over through the call's channel.
func (l *Locker) call(ctx context.Context, kind ack, fn func() error) error {
	_, err := callFor(ctx, l, 0, kind, func() (struct{}, error) { return struct{}{}, fn() }, nil)
	return err
}

// callFor runs fn, one blocking go-zookeeper call, in a goroutine and
// returns its value and error, or ctx's error (and T's zero value) if ctx
// ends first. fn's value reaches the caller only through the call's
// channel, so a fn abandoned by its caller writes nothing the caller
// reads. If fn completes after the caller left, late (if not nil) gets its
// value and error, in the call's goroutine.
//
// grace > 0: when ctx ends first, callFor still waits up to grace for fn's
// result, and returns it if it comes. Creates use it so that a node whose
// create raced a cancellation is known to the caller, who deletes it
// before returning.
func callFor[T any](ctx context.Context, l *Locker, grace time.Duration, kind ack, fn func() (T, error), late func(T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, ctxError(ctx)
	}
	tr := traceOf(ctx)
	if tr != nil {
		tr.sent.Store(true)
	}
	run := func() reply[T] {
		var r reply[T]
		r.err = l.exec(kind, func() (err error) { r.v, err = fn(); return err })
		return r
	}
	if ctx.Done() == nil {
		r := run()
		return r.v, tr.note(r.err)
	}
	p := &pending[T]{done: make(chan reply[T], 1)}
	l.calls.Add(1)
	l.running.Add(1)
	go func() {
		defer l.calls.Done()
		defer l.running.Add(-1)
		r := run()
		p.mu.Lock()
		gone := p.gone
		if !gone {
			p.done <- r
		}
		p.mu.Unlock()
		if gone && late != nil {
			late(r.v, r.err)
		}
	}()
	select {
	case r := <-p.done:
		return r.v, tr.note(r.err)
	case <-ctx.Done():
		if grace > 0 {
			t := time.NewTimer(grace)
			select {
			case r := <-p.done:
				t.Stop()
				return r.v, tr.note(r.err)
			case <-t.C:
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		select {
		case r := <-p.done:
			return r.v, tr.note(r.err)
		default:
		}
		p.gone = true
		if tr != nil {
			tr.unanswered.Store(true)
		}
		return zero, ctxError(ctx)
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
		err := l.call(ctx, ackQuorum, func() error { return l.conn.Delete(path, -1) })
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
	names, err := callFor(ctx, l, 0, ackNone, func() ([]string, error) {
		names, _, err := l.conn.Children(dir)
		return names, err
	}, nil)
	if err != nil {
		return nil, err
	}
	return sortedChildren(names), nil
}

// exists reports whether path exists, and its Stat (one attempt).
func (l *Locker) exists(ctx context.Context, path string) (bool, *zk.Stat, error) {
	type answer struct {
		ok   bool
		stat *zk.Stat
	}
	a, err := callFor(ctx, l, 0, ackNone, func() (answer, error) {
		ok, stat, err := l.conn.Exists(path)
		return answer{ok, stat}, err
	}, nil)
	return a.ok, a.stat, err
}
