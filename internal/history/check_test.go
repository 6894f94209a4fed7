package history_test

import (
	"slices"
	"testing"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/quorumlock/quorumlock/internal/history"
)

// op is an operation on name "x" with explicit logical call and return
// ticks (ret 0: still pending).
func op(client int, kind h.Kind, token uint64, outcome h.Outcome, call, ret int64) h.Op {
	return h.Op{Client: client, Kind: kind, Name: "x", Token: token, Outcome: outcome, Call: call, Return: ret}
}

func on(name string, o h.Op) h.Op {
	o.Name = name
	return o
}

func kinds(res h.Result) []h.ViolationKind {
	var ks []h.ViolationKind
	for _, v := range res.Violations {
		if !slices.Contains(ks, v.Kind) {
			ks = append(ks, v.Kind)
		}
	}
	return ks
}

func TestCheck_goodHistories(t *testing.T) {
	tests := []struct {
		name string
		h    h.History
	}{
		{"sequential holders with fence, inspect and refresh", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(1, h.Write, 5, h.OK, 3, 4),
			op(1, h.Observe, 5, h.OK, 5, 6),
			op(1, h.Refresh, 5, h.OK, 7, 8),
			op(1, h.Release, 5, h.OK, 9, 10),
			op(2, h.Acquire, 9, h.OK, 11, 12),
			op(3, h.Inspect, 9, h.OK, 13, 14),
			op(3, h.TryAcquire, 0, h.Held, 15, 16),
			op(2, h.Write, 9, h.OK, 17, 18),
			op(2, h.Release, 9, h.OK, 19, 20),
			op(3, h.Inspect, 0, h.NotHeld, 21, 22),
			op(3, h.TryAcquire, 12, h.OK, 23, 24),
		}},
		{"unobserved expiry: the stale holder is fenced out and told", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(2, h.Acquire, 7, h.OK, 3, 6), // c1's session was lost in between
			op(2, h.Write, 7, h.OK, 7, 8),
			op(1, h.Write, 5, h.Rejected, 9, 10),
			op(1, h.Observe, 5, h.NotHeld, 11, 12),
			op(1, h.Release, 5, h.NotHeld, 13, 14),
			op(2, h.Release, 7, h.OK, 15, 16),
		}},
		{"paused holder's write lands before the next holder writes", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(2, h.Acquire, 7, h.OK, 3, 4),
			op(1, h.Write, 5, h.OK, 5, 6), // fencing allows this much
			op(2, h.Write, 7, h.OK, 7, 8),
			op(1, h.Write, 5, h.Rejected, 9, 10),
		}},
		{"client gave up its lease, the store still holds it", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(1, h.Observe, 5, h.NotHeld, 3, 4),
			op(2, h.TryAcquire, 0, h.Held, 5, 6),
			op(3, h.Inspect, 5, h.OK, 7, 8),
		}},
		{"grant of unknown outcome explains held and inspect", h.History{
			op(1, h.Acquire, 0, h.Unknown, 1, 2),
			op(2, h.TryAcquire, 0, h.Held, 3, 4),
			op(3, h.Inspect, 8, h.OK, 5, 6),
			op(4, h.Acquire, 9, h.OK, 7, 10),
		}},
		{"pending grant explains held", h.History{
			op(1, h.Acquire, 3, h.OK, 1, 2),
			op(1, h.Release, 3, h.OK, 3, 4),
			op(2, h.Acquire, 0, h.Pending, 5, 0),
			op(3, h.TryAcquire, 0, h.Held, 6, 7),
		}},
		{"two unknown grants explain two held answers", h.History{
			op(1, h.Acquire, 0, h.Unknown, 1, 2),
			op(2, h.Acquire, 0, h.Unknown, 3, 4),
			op(3, h.TryAcquire, 0, h.Held, 5, 6),
			op(3, h.Acquire, 20, h.OK, 7, 8),
			op(3, h.Release, 20, h.OK, 9, 10),
			op(4, h.TryAcquire, 0, h.Held, 11, 12),
		}},
		{"limit: one unknown grant explains held answers on both sides of a known grant", h.History{
			op(1, h.Acquire, 0, h.Unknown, 1, 2),
			op(2, h.TryAcquire, 0, h.Held, 3, 4),
			op(3, h.Acquire, 5, h.OK, 5, 6),
			op(3, h.Release, 5, h.OK, 7, 8),
			op(4, h.TryAcquire, 0, h.Held, 9, 10), // strictly, needs a second unknown grant
		}},
		{"concurrent grants return out of token order", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 5),
			op(2, h.Acquire, 7, h.OK, 2, 4),
			op(1, h.Release, 5, h.NotHeld, 6, 7),
			op(2, h.Release, 7, h.OK, 8, 9),
		}},
		{"release of unknown outcome, then the lease is gone", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(1, h.Release, 5, h.Unknown, 3, 4),
			op(2, h.Inspect, 0, h.NotHeld, 5, 6),
			op(2, h.Acquire, 6, h.OK, 7, 8),
		}},
		{"overlapping writes with the same token", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(1, h.Write, 5, h.OK, 3, 6),
			op(1, h.Write, 5, h.OK, 4, 5),
		}},
		{"failed calls are ignored", h.History{
			op(1, h.Acquire, 0, h.Failed, 1, 2),
			op(1, h.TryAcquire, 0, h.Failed, 3, 4),
			op(1, h.Write, 3, h.Failed, 5, 6),
		}},
		{"names are independent", h.History{
			on("a", op(1, h.Acquire, 5, h.OK, 1, 2)),
			on("b", op(2, h.Acquire, 6, h.OK, 3, 4)),
			on("a", op(1, h.Release, 5, h.OK, 5, 6)),
			on("b", op(2, h.Observe, 6, h.OK, 7, 8)),
			on("b", op(1, h.Acquire, 0, h.Pending, 9, 0)),
		}},
		{"empty", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := h.Check(tt.h, h.Options{Dir: t.TempDir()})
			assert.True(t, res.OK(), "%s", res)
			assert.Equal(t, porcupine.Ok, res.Linearizable)
			assert.Empty(t, res.Files.Visualization, "no files for a passing history")
		})
	}
}

func TestCheck_badHistories(t *testing.T) {
	tests := []struct {
		name string
		h    h.History
		want []h.ViolationKind
	}{
		{"overlapping grants, the first released by its holder afterwards", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(2, h.Acquire, 7, h.OK, 3, 4),
			op(1, h.Release, 5, h.OK, 5, 6),
		}, []h.ViolationKind{h.Linearizability, h.HeldAfterEnd}},
		{"overlapping grants, the first observed held afterwards", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(2, h.TryAcquire, 7, h.OK, 3, 4),
			op(1, h.Observe, 5, h.OK, 5, 6),
		}, []h.ViolationKind{h.Linearizability, h.HeldAfterEnd}},
		{"token goes backwards", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(1, h.Release, 5, h.OK, 3, 4),
			op(2, h.Acquire, 3, h.OK, 5, 6),
		}, []h.ViolationKind{h.Linearizability, h.TokenOrder}},
		{"token below one Inspect reported", h.History{
			op(1, h.Acquire, 0, h.Unknown, 1, 2),
			op(2, h.Inspect, 8, h.OK, 3, 4),
			op(3, h.Acquire, 6, h.OK, 5, 6),
		}, []h.ViolationKind{h.Linearizability, h.TokenOrder}},
		{"grant before commit: the log index is granted again", h.History{
			op(1, h.Acquire, 6, h.OK, 1, 2), // never committed; index 6 reused
			op(1, h.Write, 6, h.OK, 3, 4),
			op(2, h.Acquire, 6, h.OK, 5, 6),
		}, []h.ViolationKind{h.DuplicateToken, h.TokenOrder, h.Linearizability}},
		{"one token granted to two concurrent callers", h.History{
			op(1, h.Acquire, 6, h.OK, 1, 4),
			op(2, h.Acquire, 6, h.OK, 2, 3),
		}, []h.ViolationKind{h.DuplicateToken, h.Linearizability}},
		{"holder writes with a token that was never granted", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(1, h.Write, 5, h.OK, 3, 4),
			op(2, h.Write, 9, h.OK, 5, 6),
		}, []h.ViolationKind{h.UngrantedToken}},
		{"token used before its grant was invoked", h.History{
			op(2, h.Write, 9, h.OK, 1, 2),
			op(2, h.Acquire, 9, h.OK, 3, 4),
		}, []h.ViolationKind{h.UngrantedToken}},
		{"fence accepts a stale token", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(2, h.Acquire, 7, h.OK, 3, 4), // c1 expired unobserved
			op(2, h.Write, 7, h.OK, 5, 6),
			op(1, h.Write, 5, h.OK, 7, 8),
		}, []h.ViolationKind{h.FenceStale}},
		{"fence accepts overlapping writes of different tokens", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(1, h.Write, 5, h.OK, 3, 8),
			op(2, h.Acquire, 7, h.OK, 4, 5),
			op(2, h.Write, 7, h.OK, 6, 9),
		}, []h.ViolationKind{h.FenceOverlap}},
		{"release ok on a name never held", h.History{
			op(1, h.Release, 5, h.OK, 1, 2),
		}, []h.ViolationKind{h.Linearizability, h.UngrantedToken}},
		{"release ok twice", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(1, h.Release, 5, h.OK, 3, 4),
			op(1, h.Release, 5, h.OK, 5, 6),
		}, []h.ViolationKind{h.Linearizability, h.HeldAfterEnd}},
		{"try-acquire finds a free name held", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(1, h.Release, 5, h.OK, 3, 4),
			op(2, h.TryAcquire, 0, h.Held, 5, 6),
		}, []h.ViolationKind{h.Linearizability}},
		{"an unknown grant invoked after the held answer", h.History{
			op(2, h.TryAcquire, 0, h.Held, 1, 2),
			op(1, h.Acquire, 0, h.Unknown, 3, 4),
		}, []h.ViolationKind{h.Linearizability}},
		{"inspect reports a released lease", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(1, h.Release, 5, h.OK, 3, 4),
			op(2, h.Inspect, 5, h.OK, 5, 6),
		}, []h.ViolationKind{h.Linearizability, h.HeldAfterEnd}},
		{"refresh ok after the client was told the lease ended", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(1, h.Observe, 5, h.NotHeld, 3, 4),
			op(1, h.Refresh, 5, h.OK, 5, 6),
		}, []h.ViolationKind{h.HeldAfterEnd}}, // "not held" reports are checked directly only
		{"holder confirms its lease after Inspect found the name free", h.History{
			op(1, h.Acquire, 5, h.OK, 1, 2),
			op(2, h.Inspect, 0, h.NotHeld, 3, 4),
			op(1, h.Observe, 5, h.OK, 5, 6),
		}, []h.ViolationKind{h.Linearizability, h.HeldAfterEnd}},
		{"malformed: returns before its call", h.History{
			op(1, h.Acquire, 5, h.OK, 4, 3),
		}, []h.ViolationKind{h.Malformed}},
		{"malformed: an outcome the kind cannot have", h.History{
			op(1, h.Release, 5, h.Held, 1, 2),
		}, []h.ViolationKind{h.Malformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := h.Check(tt.h, h.Options{Dir: t.TempDir()})
			require.False(t, res.OK())
			assert.ElementsMatch(t, tt.want, kinds(res), "%s", res)
			assert.NotEmpty(t, res.Files.Visualization)
			assert.NoError(t, res.FileErr)
			for _, v := range res.Violations {
				assert.NotEmpty(t, v.Msg)
				for _, i := range v.Ops {
					assert.True(t, i >= 0 && i < len(tt.h), "op index %d out of range in %s", i, v)
				}
			}
		})
	}
}

func TestCheck_linearizabilityViolationPointsAtTheOp(t *testing.T) {
	hist := h.History{
		op(1, h.Acquire, 5, h.OK, 1, 2),
		op(2, h.Acquire, 7, h.OK, 3, 4),
		op(1, h.Release, 5, h.OK, 5, 6),
	}
	res := h.Check(hist, h.Options{Dir: t.TempDir()})
	require.Equal(t, porcupine.Illegal, res.Linearizable)
	for _, v := range res.Violations {
		if v.Kind == h.Linearizability {
			assert.Equal(t, "x", v.Name)
			assert.Equal(t, []int{1, 2}, v.Ops, "%s", v)
			assert.Contains(t, v.Msg, "2 of 3")
			return
		}
	}
	t.Fatalf("no linearizability violation in %s", res)
}

func TestCheck_maxViolations(t *testing.T) {
	var hist h.History
	for i := range 5 {
		hist = append(hist, op(1, h.Write, uint64(100+i), h.OK, int64(2*i+1), int64(2*i+2)))
	}
	res := h.Check(hist, h.Options{Dir: t.TempDir(), MaxViolations: 2})
	assert.Len(t, res.Violations, 2)
	assert.Equal(t, 3, res.Omitted)
	assert.Contains(t, res.String(), "3 not shown")
}

func TestCheck_onlyTheBrokenNameFails(t *testing.T) {
	hist := h.History{
		on("good", op(1, h.Acquire, 1, h.OK, 1, 2)),
		on("bad", op(2, h.Release, 5, h.OK, 3, 4)),
		on("good", op(1, h.Release, 1, h.OK, 5, 6)),
	}
	res := h.Check(hist, h.Options{Dir: t.TempDir()})
	require.False(t, res.OK())
	for _, v := range res.Violations {
		assert.Equal(t, "bad", v.Name, "%s", v)
	}
}
