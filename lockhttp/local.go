package lockhttp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// localLeases are the leases a local-mode handler holds for its callers
// (DESIGN.md, "Two modes"): TTL leases of its Locker, named by keys it
// mints, valid at this handler until the lease ends or the handler
// closes.
type localLeases struct {
	locker  lock.Locker
	log     *slog.Logger
	timeout time.Duration

	mu     sync.Mutex
	leases map[localKey]localLease
	closed bool
}

type localKey struct {
	name string
	key  node.LeaseKey
}

type localLease struct {
	lease lock.Lease
	ttl   time.Duration
}

func newLocalLeases(l lock.Locker, log *slog.Logger, timeout time.Duration) *localLeases {
	return &localLeases{locker: l, log: log, timeout: timeout, leases: map[localKey]localLease{}}
}

// errHandlerClosed: a lease granted as the handler closed.
var errHandlerClosed = fmt.Errorf("lockhttp: the handler is closing: %w", lock.ErrClosed)

// track keeps l under a new key until it ends, whatever ends it.
func (ls *localLeases) track(l lock.Lease, ttl time.Duration) (node.LeaseKey, error) {
	var key node.LeaseKey
	_, _ = rand.Read(key[:])
	k := localKey{l.Name(), key}
	ls.mu.Lock()
	if ls.closed {
		ls.mu.Unlock()
		ls.release(l)
		return node.LeaseKey{}, errHandlerClosed
	}
	ls.leases[k] = localLease{lease: l, ttl: ttl}
	ls.mu.Unlock()
	context.AfterFunc(l.Context(), func() { ls.forget(k, l) })
	return key, nil
}

// get is the lease name that key names, if this handler holds it.
func (ls *localLeases) get(name string, key node.LeaseKey) (localLease, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l, ok := ls.leases[localKey{name, key}]
	return l, ok
}

func (ls *localLeases) forget(k localKey, l lock.Lease) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.leases[k].lease == l {
		delete(ls.leases, k)
	}
}

// release releases l, within the handler's timeout, logging a failure.
func (ls *localLeases) release(l lock.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), ls.timeout)
	defer cancel()
	if err := l.Release(ctx); err != nil && !errors.Is(err, lock.ErrNotHeld) {
		ls.log.Warn("releasing a lease this handler held", "name", l.Name(), "token", l.Token(), "error", err)
	}
}

// close releases every lease the handler holds, and any granted later.
func (ls *localLeases) close() error {
	ls.mu.Lock()
	ls.closed = true
	all := make([]lock.Lease, 0, len(ls.leases))
	for _, l := range ls.leases {
		all = append(all, l.lease)
	}
	ls.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range all {
		wg.Go(func() { ls.release(l) })
	}
	wg.Wait()
	return nil
}
