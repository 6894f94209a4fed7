package fsm

import (
	"fmt"
	"testing"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// BenchmarkApply measures State.Apply on a state holding locks=N idle
// session leases (built once per N, outside the timing). Every op applies
// the entries a client's call makes, each command decoded once and reused
// with its request renumbered (the decoding is BenchmarkCodec's):
//
//   - op=acquire-release: an Acquire of a free name (granted at once) and
//     its Release, two entries;
//   - op=handoff/queue=Q: a Release that hands the name to the head of a
//     queue of Q waiters, and the releaser's Acquire that queues it again
//     at the tail, two entries (the queue stays Q long);
//   - op=refresh: a Refresh of a held TTL lease, one entry;
//   - op=open-close: an OpenSession of a new session and its
//     CloseSession, two entries. OpenSession scans every lock for leases
//     a former session of the ID left (State.owned): its cost grows with
//     N.
func BenchmarkApply(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("locks=%d", n), func(b *testing.B) {
			st := withIdle(b, n)
			b.Run("op=acquire-release", func(b *testing.B) { benchAcquireRelease(b, st) })
			for _, q := range []int{1, 100} {
				b.Run(fmt.Sprintf("op=handoff/queue=%d", q), func(b *testing.B) { benchHandoff(b, st, q) })
			}
			b.Run("op=refresh", func(b *testing.B) { benchRefresh(b, st) })
			b.Run("op=open-close", func(b *testing.B) { benchOpenClose(b, st) })
		})
	}
}

func benchAcquireRelease(b *testing.B, st *benchState) {
	type fixture struct{ acq, rel *fsmpb.Command }
	f := reuse(st, "acquire-release", func() fixture {
		sess := st.open(b)
		name := fmt.Sprintf("free/%d", sess)
		return fixture{cmdAcquire(sess, 0, name), cmdRelease(sess, 0, name, 0)}
	})
	acq, rel := f.acq, f.rel
	b.ReportAllocs()
	for b.Loop() {
		res := st.request(b, acq, fsmpb.Code_CODE_GRANTED)
		rel.GetRelease().Token = res.GetToken()
		st.request(b, rel, fsmpb.Code_CODE_OK)
	}
}

// benchHandoff keeps one holder and q waiters on a name, each its own
// session, and rotates them: the holder releases (the head is granted)
// and queues again.
func benchHandoff(b *testing.B, st *benchState, q int) {
	type fixture struct {
		name               string
		acquires, releases map[uint64]*fsmpb.Command
	}
	f := reuse(st, fmt.Sprintf("handoff/%d", q), func() fixture {
		f := fixture{fmt.Sprintf("handoff/%d", q), map[uint64]*fsmpb.Command{}, map[uint64]*fsmpb.Command{}}
		for i := range q + 1 {
			sess := st.open(b)
			f.acquires[sess], f.releases[sess] = cmdAcquire(sess, 0, f.name), cmdRelease(sess, 0, f.name, 0)
			want := fsmpb.Code_CODE_QUEUED
			if i == 0 {
				want = fsmpb.Code_CODE_GRANTED
			}
			st.request(b, f.acquires[sess], want)
		}
		return f
	})
	name, acquires, releases := f.name, f.acquires, f.releases
	l := st.s.locks[name]
	b.ReportAllocs()
	for b.Loop() {
		h := l.holders[0]
		rel := releases[h.claim.session]
		rel.GetRelease().Token = h.token
		st.request(b, rel, fsmpb.Code_CODE_OK)
		if len(l.holders) != 1 || l.holders[0].token == h.token || len(l.queue) != q-1 {
			b.Fatalf("release at %d did not hand %q over", st.index, name)
		}
		st.request(b, acquires[h.claim.session], fsmpb.Code_CODE_QUEUED)
	}
}

func benchRefresh(b *testing.B, st *benchState) {
	ref := reuse(st, "refresh", func() *fsmpb.Command {
		sess := st.open(b)
		name := fmt.Sprintf("refresh/%d", sess)
		res := st.request(b, cmdAcquire(sess, 0, name, withTTL(sessTTL)), fsmpb.Code_CODE_GRANTED)
		return cmdRefresh(sess, 0, name, res.GetToken())
	})
	b.ReportAllocs()
	for b.Loop() {
		st.request(b, ref, fsmpb.Code_CODE_OK)
	}
}

func benchOpenClose(b *testing.B, st *benchState) {
	open, closing := cmdOpen(0, sessTTL, "n1"), cmdClose(0, 0)
	b.ReportAllocs()
	for b.Loop() {
		st.fresh++
		open.GetOpenSession().GetReq().Session, closing.GetCloseSession().GetReq().Session = st.fresh, st.fresh
		st.must(b, open, fsmpb.Code_CODE_OK)
		st.request(b, closing, fsmpb.Code_CODE_OK)
	}
}
