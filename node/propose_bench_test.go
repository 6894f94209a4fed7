package node

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// BenchmarkPropose measures the propose/apply round trip alone on one
// node, with the in-memory log (store=mem) or durable (store=disk): one
// entry per op, serial, from propose to this node's apply of it.
//   - cmd=refresh: a Refresh of a held session lease through a client's
//     request path (a sequence number, then propose: stamp, Validate,
//     Admit, Encode, raft.Apply, the FSM's apply, the wait for it here).
//     The state machine answers OK with no events: no lease bookkeeping.
//   - cmd=barrier: the term barrier (an ignorable no-op) through propose:
//     the same path without a session, and without the state machine's
//     work.
func BenchmarkPropose(b *testing.B) {
	for _, store := range []string{"mem", "disk"} {
		b.Run("store="+store, func(b *testing.B) {
			n := newBenchNode(b, store)
			ctx := context.Background()
			c, err := n.newClient(ctx)
			require.NoError(b, err)
			defer func() { _ = c.Close() }()
			l, err := c.Acquire(ctx, "bench/refresh")
			require.NoError(b, err)
			refresh := func(req *fsmpb.Request) *fsmpb.Command {
				return &fsmpb.Command{Op: &fsmpb.Command_Refresh{Refresh: &fsmpb.Refresh{Req: req, Name: l.Name(), Token: l.Token()}}}
			}
			b.Run("cmd=refresh", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					res, err := c.request(ctx, refresh)
					if err != nil || res.GetCode() != fsmpb.Code_CODE_OK {
						b.Fatalf("refresh: %v, %v", res.GetCode(), err)
					}
				}
			})
			b.Run("cmd=barrier", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					res, err := n.propose(ctx, &fsmpb.Command{Ignorable: true})
					if err != nil || res.GetCode() != fsmpb.Code_CODE_UNSPECIFIED {
						b.Fatalf("barrier: %v, %v", res.GetCode(), err)
					}
				}
			})
		})
	}
}

// newBenchNode starts a single node, in memory (store "mem") or durable
// ("disk"), closed when b ends.
func newBenchNode(b *testing.B, store string) *Node {
	cfg := Config{}
	if store == "disk" {
		cfg.DataDir = b.TempDir()
	}
	n, err := New(cfg)
	require.NoError(b, err)
	b.Cleanup(func() { _ = n.Close() })
	return n
}
