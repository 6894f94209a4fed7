package history_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/lock"
)

func TestRecorder_concurrentTicks(t *testing.T) {
	const clients, each = 8, 200
	rec := h.NewRecorder()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for range each {
				rec.Invoke(c, h.Observe, "x", 1).Return(0, nil)
			}
		})
	}
	wg.Wait()

	hist := rec.History()
	require.Len(t, hist, clients*each)
	seen := make(map[int64]bool)
	last := make(map[int]int64) // client -> last return
	for _, op := range hist {
		assert.Less(t, op.Call, op.Return)
		assert.LessOrEqual(t, op.CallAt, op.ReturnAt)
		assert.Greater(t, op.Call, last[op.Client], "a client's operations are sequential")
		last[op.Client] = op.Return
		for _, tick := range []int64{op.Call, op.Return} {
			assert.False(t, seen[tick], "tick %d used twice", tick)
			seen[tick] = true
		}
	}
	assert.Len(t, seen, 2*clients*each)
}

func TestRecorder_pendingAndCopy(t *testing.T) {
	rec := h.NewRecorder()
	inv := rec.Invoke(1, h.Acquire, "x", 0)
	hist := rec.History()
	require.Len(t, hist, 1)
	assert.Equal(t, h.Pending, hist[0].Outcome)
	assert.Zero(t, hist[0].Return)

	inv.Return(9, nil)
	assert.Equal(t, h.Pending, hist[0].Outcome, "History returns a copy")
	got := rec.History()[0]
	assert.Equal(t, h.OK, got.Outcome)
	assert.Equal(t, uint64(9), got.Token)
	assert.Panics(t, func() { inv.Return(9, nil) })
}

func TestRecorder_wrappers(t *testing.T) {
	ctx := context.Background()
	l := newMemLocker()
	rec := h.NewRecorder()

	lease, err := rec.Acquire(ctx, 1, l, "x")
	require.NoError(t, err)
	_, err = rec.TryAcquire(ctx, 2, l, "x")
	require.ErrorIs(t, err, lock.ErrHeld)
	info, err := rec.Inspect(ctx, 2, l, "x")
	require.NoError(t, err)
	assert.True(t, info.Held)
	require.NoError(t, rec.Refresh(ctx, 1, lease))
	assert.True(t, rec.Observe(1, lease))
	require.NoError(t, rec.Release(ctx, 1, lease))
	require.ErrorIs(t, rec.Release(ctx, 1, lease), lock.ErrNotHeld)
	require.ErrorIs(t, rec.Refresh(ctx, 1, lease), lock.ErrNotHeld)
	assert.False(t, rec.Observe(1, lease))
	_, err = rec.Inspect(ctx, 2, l, "x")
	require.NoError(t, err)
	_, err = rec.Acquire(ctx, 2, l, "")
	require.ErrorIs(t, err, lock.ErrInvalidName)

	tok := lease.Token()
	want := []struct {
		client  int
		kind    h.Kind
		token   uint64
		outcome h.Outcome
	}{
		{1, h.Acquire, tok, h.OK},
		{2, h.TryAcquire, 0, h.Held},
		{2, h.Inspect, tok, h.OK},
		{1, h.Refresh, tok, h.OK},
		{1, h.Observe, tok, h.OK},
		{1, h.Release, tok, h.OK},
		{1, h.Release, tok, h.NotHeld},
		{1, h.Refresh, tok, h.NotHeld},
		{1, h.Observe, tok, h.NotHeld},
		{2, h.Inspect, 0, h.NotHeld},
		{2, h.Acquire, 0, h.Failed},
	}
	hist := rec.History()
	require.Len(t, hist, len(want))
	for i, w := range want {
		op := hist[i]
		assert.Equal(t, w.client, op.Client, "#%d", i)
		assert.Equal(t, w.kind, op.Kind, "#%d", i)
		assert.Equal(t, w.token, op.Token, "#%d", i)
		assert.Equal(t, w.outcome, op.Outcome, "#%d %s", i, op)
		assert.Equal(t, op.Outcome == h.OK || op.Kind == h.Inspect, op.Err == "", "#%d error text %q", i, op.Err)
	}
	h.Require(t, hist, h.Options{})
}

func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("node: %w", err) }
	tests := []struct {
		kind  h.Kind
		token uint64
		err   error
		want  h.Outcome
	}{
		{h.Acquire, 5, nil, h.OK},
		{h.Acquire, 0, context.DeadlineExceeded, h.Unknown},
		{h.Acquire, 0, wrap(lock.ErrNoQuorum), h.Unknown},
		{h.Acquire, 0, wrap(lock.ErrClosed), h.Unknown},
		{h.Acquire, 0, wrap(lock.ErrInvalidName), h.Failed},
		{h.TryAcquire, 0, wrap(lock.ErrHeld), h.Held},
		{h.TryAcquire, 0, wrap(lock.ErrInvalidOption), h.Failed},
		{h.Release, 0, nil, h.OK},
		{h.Release, 0, wrap(lock.ErrNotHeld), h.NotHeld},
		{h.Release, 0, wrap(lock.ErrHeld), h.Unknown},
		{h.Refresh, 0, wrap(lock.ErrNotHeld), h.NotHeld},
		{h.Refresh, 0, wrap(lock.ErrNoQuorum), h.Unknown},
		{h.Observe, 0, lock.ErrExpired, h.NotHeld},
		{h.Inspect, 5, nil, h.OK},
		{h.Inspect, 0, nil, h.NotHeld},
		{h.Inspect, 0, wrap(lock.ErrNoQuorum), h.Unknown},
		{h.Write, 0, nil, h.OK},
		{h.Write, 0, wrap(h.ErrStaleToken), h.Rejected},
		{h.Write, 0, errors.New("disk full"), h.Failed},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, h.Classify(tt.kind, tt.token, tt.err), "%s %d %v", tt.kind, tt.token, tt.err)
	}
}

func TestHistory_jsonRoundTrip(t *testing.T) {
	hist := h.History{
		op(1, h.Acquire, 5, h.OK, 1, 2),
		op(2, h.TryAcquire, 0, h.Held, 3, 4),
		op(1, h.Write, 5, h.Rejected, 5, 6),
		op(3, h.Acquire, 0, h.Pending, 7, 0),
	}
	hist[2].Err = "stale"
	b, err := json.Marshal(hist)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"kind":"try-acquire"`)
	assert.Contains(t, string(b), `"outcome":"held"`)
	var back h.History
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, hist, back)

	require.Error(t, json.Unmarshal([]byte(`[{"kind":"lock"}]`), &back))
	require.Error(t, json.Unmarshal([]byte(`[{"kind":"acquire","outcome":"maybe"}]`), &back))
	_, err = json.Marshal(h.History{{Kind: 99}})
	require.Error(t, err)
}
