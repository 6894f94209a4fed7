package fsm

import (
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
		{"too large", cmdAcquire(7, 1, "a", withOwner(strings.Repeat("o", MaxCommandSize))), ErrTooLarge},
	} {
		err := Validate(c.cmd)
		require.Error(t, err, c.what)
		assert.ErrorIs(t, err, c.want, c.what)
	}
}
