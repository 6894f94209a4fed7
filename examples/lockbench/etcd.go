package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// etcdSessionTTL is the TTL of each worker's etcd session (seconds), as
// the other backends' sessions: 10 s.
const etcdSessionTTL = 10

// etcdLocker is a lock.Locker on etcd's own recipe, the one etcd users
// run: the client's concurrency package, one client connection and one
// session (lease kept alive by the client) per Locker, a Mutex per
// Acquire. It is a peer to measure against, not an adapter of this
// project: it takes no options, and a lease's token is the revision of
// the response that granted it (it grows with every grant of a name, as a
// fencing token must, but is not the key's own revision).
type etcdLocker struct {
	client  *clientv3.Client
	session *concurrency.Session
	closed  atomic.Bool
}

// newEtcdLocker connects to endpoints and opens a session.
func newEtcdLocker(endpoints []string) (lock.Locker, error) {
	client, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, DialTimeout: probeTimeout, Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, err
	}
	session, err := concurrency.NewSession(client, concurrency.WithTTL(etcdSessionTTL))
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return &etcdLocker{client: client, session: session}, nil
}

// prefix is the key prefix of a lock name.
func prefix(name string) string { return "/lockbench-locks/" + name + "/" }

func (e *etcdLocker) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	if len(opts) > 0 {
		return nil, fmt.Errorf("%w: the etcd peer takes no options", lock.ErrInvalidOption)
	}
	if e.closed.Load() {
		return nil, lock.ErrClosed
	}
	m := concurrency.NewMutex(e.session, prefix(name))
	if err := m.Lock(ctx); err != nil {
		return nil, e.closedErr(err)
	}
	return e.lease(name, m), nil
}

func (e *etcdLocker) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	if len(opts) > 0 {
		return nil, fmt.Errorf("%w: the etcd peer takes no options", lock.ErrInvalidOption)
	}
	if e.closed.Load() {
		return nil, lock.ErrClosed
	}
	m := concurrency.NewMutex(e.session, prefix(name))
	if err := m.TryLock(ctx); err != nil {
		if errors.Is(err, concurrency.ErrLocked) {
			return nil, lock.ErrHeld
		}
		return nil, e.closedErr(err)
	}
	return e.lease(name, m), nil
}

// closedErr is lock.ErrClosed once Close was called (it ends the calls in
// flight with errors of its own), else err.
func (e *etcdLocker) closedErr(err error) error {
	if e.closed.Load() {
		return lock.ErrClosed
	}
	return err
}

// lease wraps a locked Mutex; it ends when the session ends: ErrReleased
// by Close, else ErrLost.
func (e *etcdLocker) lease(name string, m *concurrency.Mutex) *etcdLease {
	l := &etcdLease{m: m}
	l.Core, l.ender = leasecore.New(name, uint64(m.Header().Revision)) //nolint:gosec // revisions are positive
	l.stop = context.AfterFunc(e.session.Ctx(), func() {
		if e.closed.Load() {
			l.ender.End(lock.ErrReleased)
		} else {
			l.ender.End(lock.ErrLost)
		}
	})
	return l
}

// Inspect reads the lock's keys: held if any, the others waiting.
func (e *etcdLocker) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	if len(opts) > 0 {
		return lock.Info{}, fmt.Errorf("%w: the etcd peer takes no options", lock.ErrInvalidOption)
	}
	if e.closed.Load() {
		return lock.Info{}, lock.ErrClosed
	}
	resp, err := e.client.Get(ctx, prefix(name), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return lock.Info{}, e.closedErr(err)
	}
	return lock.Info{Name: name, Held: resp.Count > 0, Waiters: int(max(resp.Count-1, 0))}, nil
}

// Close ends the session (etcd deletes its keys: leases released, claims
// withdrawn) and the connection; the leases end with ErrReleased. Only the
// first call acts.
func (e *etcdLocker) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	return errors.Join(e.session.Close(), e.client.Close())
}

type etcdLease struct {
	leasecore.Core
	ender leasecore.Ender
	m     *concurrency.Mutex
	stop  func() bool
}

// Refresh reports whether the session still lives (etcd's client keeps it
// alive on its own): once the lease ended, ErrNotHeld with the cause.
func (l *etcdLease) Refresh(context.Context) error {
	if l.Ended() {
		return l.NotHeld("etcd")
	}
	return nil
}

func (l *etcdLease) Release(ctx context.Context) error {
	if l.Ended() {
		return l.NotHeld("etcd")
	}
	if err := l.m.Unlock(ctx); err != nil {
		return err
	}
	l.stop()
	l.ender.End(lock.ErrReleased)
	return nil
}
