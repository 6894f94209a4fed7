package history

import (
	"context"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// Recorder records operations of many concurrent clients against one
// logical clock. It is safe for concurrent use. Record everything that one
// check covers (all clients, all fences) into the same Recorder: real-time
// order between operations is only known within one Recorder.
type Recorder struct {
	start time.Time

	mu    sync.Mutex
	clock int64 // last tick handed out
	ops   []Op
}

// NewRecorder returns an empty Recorder whose wall clock starts now.
func NewRecorder() *Recorder {
	return &Recorder{start: time.Now()}
}

// Invocation is an operation that has been invoked and not yet returned.
type Invocation struct {
	r *Recorder
	i int
}

// Invoke records the invocation of an operation and returns the handle to
// record its return with. token is the lease's token for Release, Refresh,
// Observe and Write, and 0 for Acquire, TryAcquire and Inspect (whose token
// is only known on return). Invoke before starting the call.
func (r *Recorder) Invoke(client int, kind Kind, name string, token uint64) *Invocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clock++
	r.ops = append(r.ops, Op{
		Client: client,
		Kind:   kind,
		Name:   name,
		Token:  token,
		Call:   r.clock,
		CallAt: time.Since(r.start),
	})
	return &Invocation{r: r, i: len(r.ops) - 1}
}

// Return records the return of the operation, after the call has finished.
// token is the granted token of an Acquire or TryAcquire, the holder's token
// reported by an Inspect (0: the name was free), and otherwise 0 (keeping
// the token given to Invoke). err is the call's error, mapped by Classify.
// Return panics if called twice.
func (inv *Invocation) Return(token uint64, err error) {
	r := inv.r
	r.mu.Lock()
	defer r.mu.Unlock()
	op := &r.ops[inv.i]
	if op.Outcome != Pending {
		panic("history: Invocation.Return called twice")
	}
	r.clock++
	op.Return = r.clock
	op.ReturnAt = time.Since(r.start)
	if token != 0 {
		op.Token = token
	}
	op.Outcome = Classify(op.Kind, token, err)
	if err != nil {
		op.Err = err.Error()
	}
}

// History returns a copy of everything recorded so far. Operations that
// have not returned are included as Pending.
func (r *Recorder) History() History {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(History(nil), r.ops...)
}

// Acquire records l.Acquire(ctx, name, opts...) by client.
func (r *Recorder) Acquire(ctx context.Context, client int, l lock.Locker, name string, opts ...lock.Option) (lock.Lease, error) {
	inv := r.Invoke(client, Acquire, name, 0)
	lease, err := l.Acquire(ctx, name, opts...)
	inv.Return(leaseToken(lease, err), err)
	return lease, err
}

// TryAcquire records l.TryAcquire(ctx, name, opts...) by client.
func (r *Recorder) TryAcquire(ctx context.Context, client int, l lock.Locker, name string, opts ...lock.Option) (lock.Lease, error) {
	inv := r.Invoke(client, TryAcquire, name, 0)
	lease, err := l.TryAcquire(ctx, name, opts...)
	inv.Return(leaseToken(lease, err), err)
	return lease, err
}

// Release records lease.Release(ctx) by client.
func (r *Recorder) Release(ctx context.Context, client int, lease lock.Lease) error {
	inv := r.Invoke(client, Release, lease.Name(), lease.Token())
	err := lease.Release(ctx)
	inv.Return(0, err)
	return err
}

// Refresh records lease.Refresh(ctx) by client.
func (r *Recorder) Refresh(ctx context.Context, client int, lease lock.Lease) error {
	inv := r.Invoke(client, Refresh, lease.Name(), lease.Token())
	err := lease.Refresh(ctx)
	inv.Return(0, err)
	return err
}

// Observe records client looking at lease.Err() and reports whether the
// lease was still held. Under invariant I3 a holder that sees its lease
// held knows the store has not granted the name elsewhere, so the checker
// treats "held" as a claim about the store.
func (r *Recorder) Observe(client int, lease lock.Lease) bool {
	inv := r.Invoke(client, Observe, lease.Name(), lease.Token())
	err := lease.Err()
	inv.Return(0, err)
	return err == nil
}

// Inspect records l.Inspect(ctx, name) by client.
func (r *Recorder) Inspect(ctx context.Context, client int, l lock.Locker, name string) (lock.Info, error) {
	inv := r.Invoke(client, Inspect, name, 0)
	info, err := l.Inspect(ctx, name)
	var token uint64
	if err == nil && info.Held {
		token = info.Token
	}
	inv.Return(token, err)
	return info, err
}

func leaseToken(lease lock.Lease, err error) uint64 {
	if err != nil || lease == nil {
		return 0
	}
	return lease.Token()
}
