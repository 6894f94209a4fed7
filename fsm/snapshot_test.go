package fsm

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

func TestState_Snapshot(t *testing.T) {
	t.Run("empty state is the version alone", func(t *testing.T) {
		assert.Equal(t, []byte{0x08, 0x01}, mustSnapshot(t, New()))
	})
	t.Run("empty state at level 2: version and level", func(t *testing.T) {
		assert.Equal(t, []byte{0x08, 0x02, 0x20, 0x02}, mustSnapshot(t, mustApply(t, cmdSetProtocol(2))))
	})
	t.Run("round trip at both levels", func(t *testing.T) {
		for _, s := range []*State{mustApply(t, goldenHistory()...), mustApply(t, goldenHistoryV2()...)} {
			data := mustSnapshot(t, s)
			r, err := Restore(data)
			require.NoError(t, err)
			assert.Equal(t, s.Protocol(), r.Protocol())
			assert.Equal(t, data, mustSnapshot(t, r))
			requireInvariants(t, r)
			for _, name := range []string{"alpha", "beta", "delta", "gamma", "epsilon"} {
				assert.Equal(t, s.Lock(name), r.Lock(name))
				assert.Equal(t, s.Queue(name, 0), r.Queue(name, 0))
			}
			assert.Equal(t, s.Revoked(), r.Revoked())
			assert.Equal(t, s.Sessions(), r.Sessions())
		}
	})
	t.Run("same entries, same bytes", func(t *testing.T) {
		a, b := mustApply(t, goldenHistory()...), mustApply(t, goldenHistory()...)
		assert.Equal(t, mustSnapshot(t, a), mustSnapshot(t, b))
		assert.Equal(t, mustSnapshot(t, a), mustSnapshot(t, a), "snapshot changed the state")
	})
	t.Run("sorted whatever the order of creation", func(t *testing.T) {
		a := mustApply(t, cmdOpen(s1, sessTTL, "n"), cmdOpen(s2, sessTTL, "n"), cmdOpen(s3, sessTTL, "n"))
		b := mustApply(t, cmdOpen(s3, sessTTL, "n"), cmdOpen(s1, sessTTL, "n"), cmdOpen(s2, sessTTL, "n"))
		assert.Equal(t, mustSnapshot(t, a), mustSnapshot(t, b))
	})
	t.Run("restored state does not share the input", func(t *testing.T) {
		data := goldenSnapshot(t)
		want := append([]byte(nil), data...)
		s, err := Restore(data)
		require.NoError(t, err)
		clear(data)
		assert.Equal(t, want, mustSnapshot(t, s))
	})
}

// TestRestore_Invalid breaks one rule at a time in a valid snapshot.
func TestRestore_Invalid(t *testing.T) {
	// base: session 1 holds "a" (session lease) with session 2 waiting,
	// session 2 holds "t" (TTL lease, refreshed), both with cached results.
	base := func() *fsmpb.Snapshot {
		s := mustApply(t, opens(2,
			cmdAcquire(s1, 1, "a"),
			cmdAcquire(s2, 1, "a"),
			cmdAcquire(s2, 2, "t", withTTL(time.Second)),
			cmdRefresh(s2, 3, "t", 5),
		)...)
		return decodeSnapshot(t, s)
	}
	lockA := func(p *fsmpb.Snapshot) *fsmpb.Lock { return p.Locks[0] }
	lockT := func(p *fsmpb.Snapshot) *fsmpb.Lock { return p.Locks[1] }
	cases := []struct {
		name    string
		mutate  func(p *fsmpb.Snapshot)
		wantErr error // nil: valid
	}{
		{"unchanged", func(*fsmpb.Snapshot) {}, nil},
		{"TTL lease of an unknown session", func(p *fsmpb.Snapshot) { lockT(p).Holder.Claim.Session = 99 }, nil},
		{"version 0", func(p *fsmpb.Snapshot) { p.Version = 0 }, ErrSnapshotVersion},
		{"version 3", func(p *fsmpb.Snapshot) { p.Version = 3 }, ErrSnapshotVersion},
		{"version 2 without a protocol level", func(p *fsmpb.Snapshot) { p.Version = 2 }, ErrCorrupt},
		{"version 1 with a protocol level", func(p *fsmpb.Snapshot) { p.Protocol = 2 }, ErrCorrupt},
		{"version 1 with a grant stamp", func(p *fsmpb.Snapshot) { lockA(p).Holder.GrantedUnixNano = 5 }, ErrCorrupt},
		{"version 1 with a revoked lease", func(p *fsmpb.Snapshot) { lockA(p).Holder.Revoked = true }, ErrCorrupt},
		{"version 1 with a queue stamp", func(p *fsmpb.Snapshot) { lockA(p).Queue[0].QueuedUnixNano = 5 }, ErrCorrupt},
		{"version 1 with a holder's queue stamp", func(p *fsmpb.Snapshot) { lockT(p).Holder.Claim.QueuedUnixNano = 5 }, ErrCorrupt},
		{"version 1 with a result's generation", func(p *fsmpb.Snapshot) { p.Sessions[0].Results[0].Result.Generation = 5 }, ErrCorrupt},
		{"version 1 with a result's TTL", func(p *fsmpb.Snapshot) { p.Sessions[0].Results[0].Result.TtlNs = 5 }, ErrCorrupt},
		{"session ID 0", func(p *fsmpb.Snapshot) { p.Sessions[0].Id = 0 }, ErrCorrupt},
		{"session TTL 0", func(p *fsmpb.Snapshot) { p.Sessions[0].TtlNs = 0 }, ErrCorrupt},
		{"session TTL negative", func(p *fsmpb.Snapshot) { p.Sessions[0].TtlNs = -1 }, ErrCorrupt},
		{"duplicate session", func(p *fsmpb.Snapshot) { p.Sessions[1].Id = p.Sessions[0].Id }, ErrCorrupt},
		{"cached result missing", func(p *fsmpb.Snapshot) { p.Sessions[0].Results[0].Result = nil }, ErrCorrupt},
		{"more cached results than a session keeps", func(p *fsmpb.Snapshot) {
			for seq := range uint64(MaxCachedResults) {
				p.Sessions[0].Results = append(p.Sessions[0].Results, &fsmpb.CachedResult{Seq: 100 + seq, Result: resOK()})
			}
		}, ErrCorrupt},
		{"as many cached results as a session keeps", func(p *fsmpb.Snapshot) {
			for seq := range uint64(MaxCachedResults - 1) {
				p.Sessions[0].Results = append(p.Sessions[0].Results, &fsmpb.CachedResult{Seq: 100 + seq, Result: resOK()})
			}
		}, nil},
		{"cached result below acked_below", func(p *fsmpb.Snapshot) { p.Sessions[0].AckedBelow = 2 }, ErrCorrupt},
		{"empty lock name", func(p *fsmpb.Snapshot) { lockA(p).Name = "" }, ErrCorrupt},
		{"lock name too long", func(p *fsmpb.Snapshot) { lockA(p).Name = strings.Repeat("x", MaxNameLen+1) }, ErrCorrupt},
		{"lock name with a control character", func(p *fsmpb.Snapshot) { lockA(p).Name = "a\tb" }, ErrCorrupt},
		{"duplicate lock", func(p *fsmpb.Snapshot) { lockT(p).Name = "a" }, ErrCorrupt},
		{"lock without holder", func(p *fsmpb.Snapshot) { lockA(p).Holder = nil }, ErrCorrupt},
		{"lock without holder or queue", func(p *fsmpb.Snapshot) { lockT(p).Holder = nil }, ErrCorrupt},
		{"holder without claim", func(p *fsmpb.Snapshot) { lockA(p).Holder.Claim = nil }, ErrCorrupt},
		{"holder claim ID 0", func(p *fsmpb.Snapshot) { lockA(p).Holder.Claim.Id = 0 }, ErrCorrupt},
		{"holder claim session 0", func(p *fsmpb.Snapshot) { lockT(p).Holder.Claim.Session = 0 }, ErrCorrupt},
		{"holder owner too long", func(p *fsmpb.Snapshot) { lockA(p).Holder.Claim.Owner = strings.Repeat("o", MaxOwnerLen+1) }, ErrCorrupt},
		{"holder TTL too short", func(p *fsmpb.Snapshot) { lockT(p).Holder.Claim.TtlNs = int64(time.Millisecond) }, ErrCorrupt},
		{"holder TTL negative", func(p *fsmpb.Snapshot) { lockT(p).Holder.Claim.TtlNs = -1 }, ErrCorrupt},
		{"token 0", func(p *fsmpb.Snapshot) { lockA(p).Holder.Token = 0 }, ErrCorrupt},
		{"generation below token", func(p *fsmpb.Snapshot) { lockT(p).Holder.Generation = 4 }, ErrCorrupt},
		{"session lease of an unknown session", func(p *fsmpb.Snapshot) { lockA(p).Holder.Claim.Session = 99 }, ErrCorrupt},
		{"queued claim ID 0", func(p *fsmpb.Snapshot) { lockA(p).Queue[0].Id = 0 }, ErrCorrupt},
		{"queued claim of an unknown session", func(p *fsmpb.Snapshot) { lockA(p).Queue[0].Session = 99 }, ErrCorrupt},
		{"queued claim with a bad TTL", func(p *fsmpb.Snapshot) { lockA(p).Queue[0].TtlNs = int64(MaxTTL) + 1 }, ErrCorrupt},
		{"nil queued claim", func(p *fsmpb.Snapshot) { lockA(p).Queue[0] = nil }, ErrCorrupt},
		{"queued claim with the holder's ID", func(p *fsmpb.Snapshot) { lockA(p).Queue[0].Id = lockA(p).Holder.Claim.Id }, ErrCorrupt},
		{"claim ID of another lock's claim", func(p *fsmpb.Snapshot) { lockT(p).Holder.Claim.Id = lockA(p).Queue[0].Id }, ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.mutate(p)
			data, err := proto.MarshalOptions{AllowPartial: true}.Marshal(p)
			require.NoError(t, err)
			s, err := Restore(data)
			if tc.wantErr == nil {
				require.NoError(t, err)
				assert.NoError(t, checkInvariants(s))
				assert.Equal(t, data, mustSnapshot(t, s))
				return
			}
			assert.ErrorIs(t, err, tc.wantErr)
			assert.Nil(t, s, "a rejected snapshot must not give a state")
		})
	}
}

// TestRestore_InvalidV2 breaks one rule of format 2 at a time.
func TestRestore_InvalidV2(t *testing.T) {
	// base: level 2; session 1 holds "a" (session lease, revoked, stamped)
	// with session 2 waiting (stamped), session 2 holds "t" (TTL lease,
	// revoked) and "u" (TTL lease adopted from session 1).
	base := func() *fsmpb.Snapshot {
		s := mustApply(t, opens2(2,
			withStamp(cmdAcquire(s1, 1, "a"), 40),        // 4
			withStamp(cmdAcquire(s2, 1, "a"), 50),        // 5
			cmdAcquire(s2, 2, "t", withTTL(time.Second)), // 6
			cmdRevoke(s1, 2, "a", 4),                     // 7
			cmdRevoke(s1, 3, "t", 6),                     // 8
			cmdAcquire(s1, 4, "u", withTTL(time.Second)), // 9
			withStamp(cmdAdopt(s2, 3, "u", 9), 100),      // 10
		)...)
		p := decodeSnapshot(t, s)
		require.Equal(t, uint32(2), p.GetVersion())
		require.True(t, p.Locks[0].Holder.Revoked && p.Locks[1].Holder.Revoked)
		return p
	}
	lockA := func(p *fsmpb.Snapshot) *fsmpb.Lock { return p.Locks[0] }
	lockT := func(p *fsmpb.Snapshot) *fsmpb.Lock { return p.Locks[1] }
	cases := []struct {
		name    string
		mutate  func(p *fsmpb.Snapshot)
		wantErr error // nil: valid
	}{
		{"unchanged", func(*fsmpb.Snapshot) {}, nil},
		{"protocol 0", func(p *fsmpb.Snapshot) { p.Protocol = 0 }, ErrCorrupt},
		{"protocol 1", func(p *fsmpb.Snapshot) { p.Protocol = 1 }, ErrCorrupt},
		{"protocol above this build", func(p *fsmpb.Snapshot) { p.Protocol = uint32(Protocol) + 1 }, ErrSnapshotVersion},
		{"as version 1", func(p *fsmpb.Snapshot) { p.Version = 1 }, ErrCorrupt},
		{"as version 1 at level 0", func(p *fsmpb.Snapshot) { p.Version, p.Protocol = 1, 0 }, ErrCorrupt},
		{"revoked TTL lease of an unknown session", func(p *fsmpb.Snapshot) { lockT(p).Holder.Claim.Session = 99 }, ErrCorrupt},
		{"TTL lease not revoked of an unknown session", func(p *fsmpb.Snapshot) {
			lockT(p).Holder.Claim.Session, lockT(p).Holder.Revoked = 99, false
		}, nil},
		{"not revoked", func(p *fsmpb.Snapshot) { lockA(p).Holder.Revoked = false }, nil},
		{"no stamps", func(p *fsmpb.Snapshot) { lockA(p).Holder.GrantedUnixNano, lockA(p).Queue[0].QueuedUnixNano = 0, 0 }, nil},
		{"unknown field in a lease", func(p *fsmpb.Snapshot) {
			lockA(p).Holder.ProtoReflect().SetUnknown([]byte{0x98, 0x06, 0x01}) // field 99
		}, ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.mutate(p)
			data, err := marshalOpts.Marshal(p)
			require.NoError(t, err)
			s, err := Restore(data)
			if tc.wantErr == nil {
				require.NoError(t, err)
				assert.NoError(t, checkInvariants(s))
				assert.Equal(t, 2, s.Protocol())
				assert.Equal(t, data, mustSnapshot(t, s))
				return
			}
			assert.ErrorIs(t, err, tc.wantErr)
			assert.Nil(t, s, "a rejected snapshot must not give a state")
		})
	}
}

func TestRestore_Garbage(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty: no version", nil, ErrSnapshotVersion},
		{"0xff", []byte{0xff}, ErrCorrupt},
		{"truncated varint", []byte{0x08}, ErrCorrupt},
		{"session length past the end", []byte{0x08, 0x01, 0x12, 0x05, 0x08}, ErrCorrupt},
		{"bad UTF-8 in a node", []byte{0x08, 0x01, 0x12, 0x07, 0x08, 0x01, 0x10, 0x01, 0x1a, 0x01, 0xff}, ErrCorrupt},
		// Protobuf keeps a field of the wrong wire type as an unknown field:
		// one flipped bit in a tag would silently drop a session or lock.
		{"wrong wire type for sessions", []byte{0x08, 0x01, 0x10, 0x01}, ErrCorrupt},
		{"wrong wire type for locks", append(goldenSnapshot(t), 0x18, 0x01), ErrCorrupt},
		{"unknown top-level field", append(goldenSnapshot(t), 0x48, 0x01), ErrCorrupt},
		{"unknown field in a claim", snapshotWithUnknownInClaim(t), ErrCorrupt},
		{"unknown field in a cached result", snapshotWithUnknownInResult(t), ErrCorrupt},
		{"unknown field in version 3", []byte{0x08, 0x03, 0x48, 0x01}, ErrSnapshotVersion},
		{"unknown field in version 2", []byte{0x08, 0x02, 0x20, 0x02, 0x48, 0x01}, ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Restore(tc.data)
			assert.ErrorIs(t, err, tc.want)
			assert.Nil(t, s)
		})
	}
}

func snapshotWithUnknownInClaim(t *testing.T) []byte {
	t.Helper()
	var p fsmpb.Snapshot
	require.NoError(t, proto.Unmarshal(goldenSnapshot(t), &p))
	p.Locks[0].Queue[0].ProtoReflect().SetUnknown([]byte{0x98, 0x06, 0x01}) // field 99
	b, err := proto.Marshal(&p)
	require.NoError(t, err)
	return b
}

func snapshotWithUnknownInResult(t *testing.T) []byte {
	t.Helper()
	var p fsmpb.Snapshot
	require.NoError(t, proto.Unmarshal(goldenSnapshot(t), &p))
	p.Sessions[1].Results[2].Result.ProtoReflect().SetUnknown([]byte{0x98, 0x06, 0x01}) // field 99
	b, err := proto.Marshal(&p)
	require.NoError(t, err)
	return b
}
