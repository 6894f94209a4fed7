package history_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/quorumlock/quorumlock/internal/history"
)

func outcomes(hist h.History) []h.Outcome {
	var out []h.Outcome
	for _, op := range hist {
		out = append(out, op.Outcome)
	}
	return out
}

func TestFence_Write(t *testing.T) {
	ctx := context.Background()
	rec := h.NewRecorder()
	f := h.NewFence(rec, h.FenceConfig{})

	require.NoError(t, f.Write(ctx, 1, "x", 5))
	require.NoError(t, f.Write(ctx, 1, "x", 5), "an equal token is the same holder")
	require.NoError(t, f.Write(ctx, 2, "x", 7))
	require.ErrorIs(t, f.Write(ctx, 1, "x", 5), h.ErrStaleToken)
	require.NoError(t, f.Write(ctx, 3, "y", 1), "names are fenced separately")
	assert.Equal(t, uint64(7), f.Token("x"))
	assert.Equal(t, uint64(1), f.Token("y"))
	assert.Zero(t, f.Token("z"))

	hist := rec.History()
	assert.Equal(t, []h.Outcome{h.OK, h.OK, h.OK, h.Rejected, h.OK}, outcomes(hist))
	for _, op := range hist {
		assert.Equal(t, h.Write, op.Kind)
		assert.Less(t, op.Call, op.Return)
	}
}

// A write that is overtaken by a greater token while its section runs is
// not committed: committed writes of different tokens never overlap.
func TestFence_supersededDuringSection(t *testing.T) {
	ctx := context.Background()
	rec := h.NewRecorder()
	var f *h.Fence
	var innerErr error
	f = h.NewFence(rec, h.FenceConfig{Section: func(ctx context.Context, client int, name string, token uint64) error {
		if token == 5 {
			innerErr = f.Write(ctx, 2, name, 7) // the next holder writes meanwhile
		}
		return nil
	}})
	err := f.Write(ctx, 1, "x", 5)
	require.ErrorIs(t, err, h.ErrStaleToken)
	require.NoError(t, innerErr)

	hist := rec.History()
	require.Len(t, hist, 2)
	assert.Equal(t, h.Op{Client: 1, Kind: h.Write, Name: "x", Token: 5, Outcome: h.Rejected, Err: err.Error(), Call: 1, Return: 4},
		withoutWallTime(hist[0]))
	assert.Equal(t, h.Op{Client: 2, Kind: h.Write, Name: "x", Token: 7, Outcome: h.OK, Call: 2, Return: 3},
		withoutWallTime(hist[1]))
}

func TestFence_sectionError(t *testing.T) {
	boom := errors.New("boom")
	rec := h.NewRecorder()
	f := h.NewFence(rec, h.FenceConfig{Section: func(context.Context, int, string, uint64) error { return boom }})
	require.ErrorIs(t, f.Write(context.Background(), 1, "x", 5), boom)
	assert.Equal(t, []h.Outcome{h.Failed}, outcomes(rec.History()))
}

func TestFence_endedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := h.NewRecorder()
	f := h.NewFence(rec, h.FenceConfig{})
	require.ErrorIs(t, f.Write(ctx, 1, "x", 5), context.Canceled)
	assert.Empty(t, rec.History(), "nothing happened, nothing recorded")
	assert.Zero(t, f.Token("x"))
}

func withoutWallTime(op h.Op) h.Op {
	op.CallAt, op.ReturnAt = 0, 0
	return op
}
