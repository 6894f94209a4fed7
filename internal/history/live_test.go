package history_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/lock"
)

// contend runs clients goroutines, each doing rounds of: acquire one of
// names (Acquire, TryAcquire, or an Acquire with an ended context whose
// outcome the checker must treat as unknown), two fenced writes, Observe,
// sometimes Refresh and Inspect, Release. Client 0 also ends someone's
// lease every fourth round, as a lost session does. It returns the history.
func contend(t *testing.T, clients, rounds int, names []string) h.History {
	t.Helper()
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	l := newMemLocker()
	rec := h.NewRecorder()
	fence := h.NewFence(rec, h.FenceConfig{})

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Go(func() {
			for i := range rounds {
				name := names[(c+i)%len(names)]
				if c == 0 && i%4 == 0 {
					l.expire(names[(c+i+1)%len(names)])
				}
				var lease lock.Lease
				var err error
				switch i % 8 {
				case 0, 1, 2, 3, 4:
					lease, err = rec.Acquire(ctx, c, l, name)
				case 5, 6:
					lease, err = rec.TryAcquire(ctx, c, l, name)
				case 7:
					_, err = rec.Acquire(cancelled, c, l, name)
				}
				switch {
				case errors.Is(err, lock.ErrHeld), errors.Is(err, context.Canceled):
					continue
				case err != nil:
					errs <- err
					return
				}
				for range 2 {
					if err := fence.Write(ctx, c, name, lease.Token()); err != nil && !errors.Is(err, h.ErrStaleToken) {
						errs <- err
						return
					}
				}
				rec.Observe(c, lease)
				if i%3 == 0 {
					_ = rec.Refresh(ctx, c, lease)
				}
				if i%5 == 0 {
					if _, err := rec.Inspect(ctx, c, l, name); err != nil {
						errs <- err
						return
					}
				}
				if err := rec.Release(ctx, c, lease); err != nil && !errors.Is(err, lock.ErrNotHeld) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	hist := rec.History()
	count := make(map[h.Outcome]int)
	for _, op := range hist {
		count[op.Outcome]++
	}
	require.Equal(t, clients*(rounds/8), count[h.Unknown], "one cancelled Acquire per 8 rounds")
	require.Zero(t, count[h.Pending])
	return hist
}

// TestLive_correctLockPasses records 8 clients contending on two names of a
// correct in-process lock, with sessions lost under them, and checks the
// history.
func TestLive_correctLockPasses(t *testing.T) {
	h.Require(t, contend(t, 8, 120, []string{"a", "b"}), h.Options{})
}

// TestCheck_contendedScale guards the model's choices that keep porcupine
// fast (see doc.go): with 16 clients on one name, a few thousand operations
// timed out before grants were tied to token order, and a stale holder at
// the end of the history could not be proven illegal while unknown grants
// were counted.
func TestCheck_contendedScale(t *testing.T) {
	hist := contend(t, 16, 100, []string{"x"})
	res := h.Require(t, hist, h.Options{Timeout: 15 * time.Second})
	assert.Equal(t, porcupine.Ok, res.Linearizable)

	// The first holder reports its lease held after everything else.
	var first int
	for i, op := range hist {
		if op.Kind == h.Acquire && op.Outcome == h.OK {
			first = i
			break
		}
	}
	last := hist[len(hist)-1].Return
	hist = append(hist, h.Op{Client: 99, Kind: h.Observe, Name: "x", Token: hist[first].Token, Outcome: h.OK, Call: last + 1, Return: last + 2})
	res = h.Check(hist, h.Options{Dir: t.TempDir(), Timeout: 15 * time.Second})
	assert.Equal(t, porcupine.Illegal, res.Linearizable, "proven, not timed out")
	assert.True(t, res.Has(h.HeldAfterEnd), "%s", res)
}

// writer is a fenced resource: the real Fence or a broken one.
type writer interface {
	Write(ctx context.Context, client int, name string, token uint64) error
}

// unfenced is a broken resource: it records writes like Fence but skips the
// token check.
type unfenced struct{ rec *h.Recorder }

func (u unfenced) Write(_ context.Context, client int, name string, token uint64) error {
	inv := u.rec.Invoke(client, h.Write, name, token)
	runtime.Gosched()
	inv.Return(0, nil)
	return nil
}

// TestLive_pausedHolder plays a holder paused past its session: its lease is
// lost, the name goes to another client who writes, then the paused holder
// resumes and writes with its old token. The Fence refuses the write and the
// history passes; a resource that skips the fencing check accepts it and the
// checker catches that.
func TestLive_pausedHolder(t *testing.T) {
	tests := []struct {
		name     string
		resource func(*h.Recorder) writer
		ok       bool
	}{
		{"fence", func(r *h.Recorder) writer { return h.NewFence(r, h.FenceConfig{}) }, true},
		{"unfenced resource", func(r *h.Recorder) writer { return unfenced{r} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			l := newMemLocker()
			rec := h.NewRecorder()
			res := tt.resource(rec)

			old, err := rec.Acquire(ctx, 1, l, "x")
			require.NoError(t, err)
			require.NoError(t, res.Write(ctx, 1, "x", old.Token()))
			l.expire("x") // client 1 is paused past its session TTL
			cur, err := rec.Acquire(ctx, 2, l, "x")
			require.NoError(t, err)
			require.NoError(t, res.Write(ctx, 2, "x", cur.Token()))

			// Client 1 resumes and writes before looking at its lease.
			staleErr := res.Write(ctx, 1, "x", old.Token())
			assert.False(t, rec.Observe(1, old))
			require.ErrorIs(t, rec.Release(ctx, 1, old), lock.ErrNotHeld)
			require.NoError(t, rec.Release(ctx, 2, cur))

			result := h.Check(rec.History(), h.Options{Dir: t.TempDir()})
			if tt.ok {
				require.ErrorIs(t, staleErr, h.ErrStaleToken)
				assert.True(t, result.OK(), "%s", result)
				return
			}
			require.NoError(t, staleErr)
			assert.Equal(t, []h.ViolationKind{h.FenceStale}, kinds(result), "%s", result)
		})
	}
}

// eagerLocker is a broken Locker: TryAcquire grants without checking the
// holder, as a node that answered before its grant was committed (and lost
// the race with another grant) would look to its clients.
type eagerLocker struct{ *memLocker }

func (e eagerLocker) TryAcquire(_ context.Context, name string, _ ...lock.Option) (lock.Lease, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.grantLocked(name), nil
}

func TestLive_twoHoldersCaught(t *testing.T) {
	ctx := context.Background()
	l := eagerLocker{newMemLocker()}
	rec := h.NewRecorder()
	fence := h.NewFence(rec, h.FenceConfig{})

	first, err := rec.Acquire(ctx, 1, l, "x")
	require.NoError(t, err)
	second, err := rec.TryAcquire(ctx, 2, l, "x")
	require.NoError(t, err, "the broken locker grants a held name")
	require.NoError(t, fence.Write(ctx, 2, "x", second.Token()))
	require.ErrorIs(t, fence.Write(ctx, 1, "x", first.Token()), h.ErrStaleToken)
	assert.True(t, rec.Observe(1, first), "the first holder still believes it holds the lock")

	res := h.Check(rec.History(), h.Options{Dir: t.TempDir()})
	assert.ElementsMatch(t, []h.ViolationKind{h.Linearizability, h.HeldAfterEnd}, kinds(res), "%s", res)
}
