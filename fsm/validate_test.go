package fsm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

func TestValidate_accepts(t *testing.T) {
	for _, cmd := range []*fsmpb.Command{
		{Ignorable: true}, // the term barrier
		withStamp(&fsmpb.Command{Ignorable: true}, 42),
		cmdOpen(7, MinSessionTTL, "n1"),
		cmdOpen(7, MaxSessionTTL, strings.Repeat("n", MaxNodeIDLen)),
		cmdClose(7, 3),
		cmdExpireSession(7),
		cmdAcquire(7, 1, "a"),
		cmdAcquire(7, 1, strings.Repeat("x", MaxNameLen), withTTL(MaxTTL), withOwner(strings.Repeat("o", MaxOwnerLen)), withTry()),
		cmdAcquire(7, 1, "a", withTTL(MinTTL)),
		cmdRelease(7, 2, "a", 5),
		cmdRefresh(7, 2, "a", 5),
		cmdCancel(7, 2, "a", 5),
		cmdExpireLease("a", 5, 6),
		cmdSetProtocol(2),
		cmdSetProtocol(uint32(Protocol)),
		cmdRevoke(7, 2, "a", 5),
		cmdEndRevoked("a", 5),
		cmdAdopt(7, 2, strings.Repeat("x", MaxNameLen), 5),
		cmdOpenClient(9, k(1), strings.Repeat("o", MaxOwnerLen)),
		cmdCloseClient(7, 3, 9, k(1)),
		cmdAcquire(7, 1, "a", forClient(9, k(1), k(2))),
		cmdAcquire(7, 1, "a", withTTL(MinTTL), withKey(k(2))),
		cmdReleaseKey(7, 2, "a", 0, k(2)),
		cmdRefreshKey(7, 2, "a", 5, k(2)),
		cmdAdoptKey(7, 2, "a", 5, k(2)),
	} {
		assert.NoError(t, Validate(cmd), "%v", cmd)
	}
}

func TestValidate_refuses(t *testing.T) {
	withUnknown := func(m proto.Message) proto.Message {
		m.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
		return m
	}
	acquireWithUnknownReq := cmdAcquire(7, 1, "a")
	withUnknown(acquireWithUnknownReq.GetAcquire().GetReq())

	for _, c := range []struct {
		what string
		cmd  *fsmpb.Command
		want error
	}{
		{"nil", nil, ErrInvalid},
		{"no op, not ignorable", &fsmpb.Command{}, ErrUnknownCommand},
		{"unknown op, ignorable", withUnknown(&fsmpb.Command{Ignorable: true}).(*fsmpb.Command), ErrUnknownCommand},
		{"unknown op", withUnknown(&fsmpb.Command{}).(*fsmpb.Command), ErrUnknownCommand},
		{"unknown field deep inside", acquireWithUnknownReq, ErrUnknownCommand},
		{"open: session 0", cmdOpen(0, time.Second, "n"), ErrInvalid},
		{"open: no request", &fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{TtlNs: int64(time.Second)}}}, ErrInvalid},
		{"open: TTL too short", cmdOpen(7, MinSessionTTL-1, "n"), ErrInvalid},
		{"open: TTL too long", cmdOpen(7, MaxSessionTTL+1, "n"), ErrInvalid},
		{"open: negative TTL", cmdOpen(7, -time.Second, "n"), ErrInvalid},
		{"open: node ID too long", cmdOpen(7, time.Second, strings.Repeat("n", MaxNodeIDLen+1)), ErrInvalid},
		{"close: no request", &fsmpb.Command{Op: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{}}}, ErrInvalid},
		{"close: session 0", cmdClose(0, 1), ErrInvalid},
		{"expire session 0", cmdExpireSession(0), ErrInvalid},
		{"acquire: empty name", cmdAcquire(7, 1, ""), ErrInvalid},
		{"acquire: long name", cmdAcquire(7, 1, strings.Repeat("x", MaxNameLen+1)), ErrInvalid},
		{"acquire: control character", cmdAcquire(7, 1, "a\x00b"), ErrInvalid},
		{"acquire: owner too long", cmdAcquire(7, 1, "a", withOwner(strings.Repeat("o", MaxOwnerLen+1))), ErrInvalid},
		{"acquire: TTL too short", cmdAcquire(7, 1, "a", withTTL(MinTTL-1)), ErrInvalid},
		{"acquire: TTL too long", cmdAcquire(7, 1, "a", withTTL(MaxTTL+1)), ErrInvalid},
		{"acquire: session 0", cmdAcquire(0, 1, "a"), ErrInvalid},
		{"release: token 0", cmdRelease(7, 1, "a", 0), ErrInvalid},
		{"release: bad name", cmdRelease(7, 1, "", 5), ErrInvalid},
		{"refresh: token 0", cmdRefresh(7, 1, "a", 0), ErrInvalid},
		{"cancel: claim 0", cmdCancel(7, 1, "a", 0), ErrInvalid},
		{"expire lease: token 0", cmdExpireLease("a", 0, 6), ErrInvalid},
		{"expire lease: generation 0", cmdExpireLease("a", 5, 0), ErrInvalid},
		{"expire lease: bad name", cmdExpireLease("", 5, 6), ErrInvalid},
		{"set protocol 0", cmdSetProtocol(0), ErrInvalid},
		{"set protocol 1", cmdSetProtocol(1), ErrInvalid},
		{"set protocol above this build", cmdSetProtocol(uint32(Protocol) + 1), ErrUnknownCommand},
		{"revoke: token 0", cmdRevoke(7, 1, "a", 0), ErrInvalid},
		{"revoke: bad name", cmdRevoke(7, 1, "a\x00", 5), ErrInvalid},
		{"revoke: session 0", cmdRevoke(0, 1, "a", 5), ErrInvalid},
		{"revoke: no request", &fsmpb.Command{Op: &fsmpb.Command_Revoke{Revoke: &fsmpb.Revoke{Name: "a", Token: 5}}}, ErrInvalid},
		{"end revoked: token 0", cmdEndRevoked("a", 0), ErrInvalid},
		{"end revoked: bad name", cmdEndRevoked("", 5), ErrInvalid},
		{"adopt: token 0", cmdAdopt(7, 1, "a", 0), ErrInvalid},
		{"adopt: long name", cmdAdopt(7, 1, strings.Repeat("x", MaxNameLen+1), 5), ErrInvalid},
		{"adopt: session 0", cmdAdopt(0, 1, "a", 5), ErrInvalid},
		{"too large", cmdAcquire(7, 1, "a", withOwner(strings.Repeat("o", MaxCommandSize))), ErrTooLarge},
		{"open: short secret", cmdOpenClient(9, []byte("x"), ""), ErrInvalid},
		{"open: owner without secret", cmdOpenClient(9, nil, "web"), ErrInvalid},
		{"open: client owner too long", cmdOpenClient(9, k(1), strings.Repeat("o", MaxOwnerLen+1)), ErrInvalid},
		{"close: client without secret", cmdCloseClient(7, 1, 9, nil), ErrInvalid},
		{"close: secret without client", cmdCloseClient(7, 1, 0, k(1)), ErrInvalid},
		{"acquire: client without key", cmdAcquire(7, 1, "a", forClient(9, k(1), nil)), ErrInvalid},
		{"acquire: client without secret", cmdAcquire(7, 1, "a", forClient(9, nil, k(2))), ErrInvalid},
		{"acquire: short key", cmdAcquire(7, 1, "a", withKey([]byte("x"))), ErrInvalid},
		{"release: token 0, no key", cmdReleaseKey(7, 1, "a", 0, nil), ErrInvalid},
		{"release: short key", cmdReleaseKey(7, 1, "a", 0, []byte("x")), ErrInvalid},
		{"refresh: long key", cmdRefreshKey(7, 1, "a", 0, k(1)[:KeyLen-1]), ErrInvalid},
		{"adopt: short key", cmdAdoptKey(7, 1, "a", 5, []byte("x")), ErrInvalid},
	} {
		err := Validate(c.cmd)
		require.Error(t, err, c.what)
		assert.ErrorIs(t, err, c.want, c.what)
	}
}

// TestValidate_acceptsWhatApplyActsOn: a command Validate accepts is one
// Apply acts on as intended: no error, never INVALID, and at protocol
// level 2 never UNSUPPORTED. Checked on the golden commands and the
// FuzzDecode corpus applied to fuzzBase, and on random histories.
func TestValidate_acceptsWhatApplyActsOn(t *testing.T) {
	var cmds []*fsmpb.Command
	for _, g := range goldenCommands() {
		cmds = append(cmds, g.cmd)
	}
	corpus, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzDecode", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, corpus)
	for _, path := range corpus {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		if cmd, err := Decode(parseFuzzSeedFile(t, b)); err == nil {
			cmds = append(cmds, cmd)
		}
	}
	base := fuzzBase5(t)
	accepted := 0
	for _, cmd := range cmds {
		if Validate(cmd) != nil {
			continue
		}
		accepted++
		s, err := Restore(base)
		require.NoError(t, err)
		require.Equal(t, Protocol, s.Protocol())
		res, _, err := s.Apply(fuzzIndex, cmd)
		require.NoError(t, err, "%v", cmd)
		assert.NotEqual(t, fsmpb.Code_CODE_INVALID, res.GetCode(), "%v", cmd)
		assert.NotEqual(t, fsmpb.Code_CODE_UNSUPPORTED, res.GetCode(), "%v", cmd)
	}
	assert.Greater(t, accepted, len(goldenCommands())/2, "the corpus hardly reaches Apply")

	// Random histories, at level 1 and 2: UNSUPPORTED is the right answer
	// at level 1, so only INVALID and errors are checked there.
	for seed := uint64(1); seed <= 20; seed++ {
		s := New()
		h := newHistory(seed, s, 300)
		for range 300 {
			cmd := h.next()
			valid := Validate(cmd)
			res, events, err := s.Apply(h.index, cmd)
			h.observe(events)
			if valid != nil {
				continue
			}
			require.NoError(t, err, "seed %d index %d: %v", seed, h.index, cmd)
			require.NotEqual(t, fsmpb.Code_CODE_INVALID, res.GetCode(), "seed %d index %d: %v", seed, h.index, cmd)
		}
	}
}
