package fsm

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// commandOfSize returns an Acquire whose encoding is exactly n bytes.
func commandOfSize(t *testing.T, n int) *fsmpb.Command {
	t.Helper()
	owner := n - 64
	for range 8 {
		cmd := cmdAcquire(s1, 1, "a", withOwner(strings.Repeat("o", owner)))
		size := proto.Size(cmd)
		if size == n {
			return cmd
		}
		owner += n - size
	}
	t.Fatalf("no command of %d bytes", n)
	return nil
}

func TestEncode_Limit(t *testing.T) {
	atLimit := commandOfSize(t, MaxCommandSize)
	b, err := Encode(atLimit)
	require.NoError(t, err)
	assert.Len(t, b, MaxCommandSize)

	over := commandOfSize(t, MaxCommandSize+1)
	b, err = Encode(over)
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.Nil(t, b)
}

func TestDecode_Limit(t *testing.T) {
	atLimit, err := Encode(commandOfSize(t, MaxCommandSize))
	require.NoError(t, err)
	cmd, err := Decode(atLimit)
	require.NoError(t, err)
	assert.Equal(t, MaxCommandSize, proto.Size(cmd))

	// Well-formed protobuf over the limit (a repeated scalar field decodes
	// fine): rejected before decoding.
	over := append(slices.Clip(atLimit), 0x08, 0x01) // stamp_unix_nano = 1
	require.Len(t, over, MaxCommandSize+2)
	cmd, err = Decode(over)
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.ErrorIs(t, err, ErrCorrupt, "DESIGN.md: Decode errors wrap ErrCorrupt")
	assert.Nil(t, cmd)
}

func TestDecode_Corrupt(t *testing.T) {
	valid, err := Encode(cmdAcquire(s1, 1, "name", withOwner("owner")))
	require.NoError(t, err)
	cases := []struct {
		name string
		data []byte
	}{
		{"one byte 0xff", []byte{0xff}},
		{"field number 0", []byte{0x00}},
		{"truncated varint", []byte{0x08, 0x80}},
		{"truncated", valid[:len(valid)-1]},
		{"length past the end", []byte{0x6a, 0x10, 0x0a}},
		{"end-group without start", []byte{0x0c}},
		{"bad UTF-8 in a name", mustMarshalRaw(t, 13, mustMarshalRaw(t, 2, []byte("a\xffb")))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := Decode(tc.data)
			assert.ErrorIs(t, err, ErrCorrupt)
			assert.NotErrorIs(t, err, ErrTooLarge)
			assert.Nil(t, cmd)
		})
	}
}

// mustMarshalRaw returns the bytes field of number num holding b.
func mustMarshalRaw(t *testing.T, num protowire.Number, b []byte) []byte {
	t.Helper()
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}

func TestDecode_Empty(t *testing.T) {
	// Zero bytes are a valid Command without op: not ignorable, so Apply
	// refuses it.
	cmd, err := Decode(nil)
	require.NoError(t, err)
	assert.Nil(t, cmd.GetOp())
	_, _, err = New().Apply(1, cmd)
	assert.ErrorIs(t, err, ErrUnknownCommand)
}

func TestEncode_Deterministic(t *testing.T) {
	for _, g := range goldenCommands() {
		t.Run(g.file, func(t *testing.T) {
			a, err := Encode(g.cmd)
			require.NoError(t, err)
			b, err := Encode(proto.Clone(g.cmd).(*fsmpb.Command))
			require.NoError(t, err)
			assert.Equal(t, a, b)
			back, err := Decode(a)
			require.NoError(t, err)
			assert.True(t, proto.Equal(g.cmd, back), "round trip: %v != %v", g.cmd, back)
		})
	}
}
