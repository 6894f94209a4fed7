package zookeeper_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/lock"
)

// TestNodeData_Format2: every field of a format-2 record survives a round
// trip, and the bytes are the documented layout (DESIGN.md, "Node data,
// format 2").
func TestNodeData_Format2(t *testing.T) {
	owner := strings.Repeat("ö", 32<<10)
	for _, r := range []zookeeper.Record{
		{},
		{Owner: "x", Holder: "h", Node: "n"},
		{TTL: time.Minute, State: zookeeper.StateGranted, Granted: 1_700_000_000_123, Adoptions: 3, Timeout: 10 * time.Second,
			Holder: strings.Repeat("a", 64), Node: strings.Repeat("é", 127), Owner: owner},
		{TTL: 100 * time.Millisecond, State: zookeeper.StateRevoked},
	} {
		got, err := zookeeper.DecodeRecord(zookeeper.EncodeRecord(r))
		require.NoError(t, err)
		r.Format = 2
		assert.Equal(t, r, got)
	}
	golden := []byte{
		2, 1, 1, // format, kind TTL, state granted
		0, 0, 0, 0, 0, 0, 0xea, 0x60, // TTL 60000 ms
		0, 0, 0, 0, 0, 0, 0x30, 0x39, // granted 12345
		0, 0, 0, 2, // adoptions
		0, 0, 0x27, 0x10, // holder's session timeout 10000 ms
		2, 'h', '1', // holder
		3, 'z', 'k', '1', // node
		'o', 'w', 'n', // owner
	}
	want := zookeeper.Record{Format: 2, TTL: time.Minute, State: zookeeper.StateGranted, Granted: 12345, Adoptions: 2,
		Timeout: 10 * time.Second, Holder: "h1", Node: "zk1", Owner: "own"}
	got, err := zookeeper.DecodeRecord(golden)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Equal(t, golden, zookeeper.EncodeRecord(want))
}

// TestNodeData_Format3: a permit's record is format 2 with its slot
// after the holder's session timeout (DESIGN.md, "Node data, format 3").
func TestNodeData_Format3(t *testing.T) {
	for _, r := range []zookeeper.Record{
		{Format: 3},
		{Format: 3, Slot: lock.MaxPermits - 1, TTL: time.Minute, State: zookeeper.StateGranted, Holder: "h", Owner: "o"},
	} {
		got, err := zookeeper.DecodeRecord(zookeeper.EncodeRecord(r))
		require.NoError(t, err)
		assert.Equal(t, r, got)
	}
	golden := []byte{
		3, 0, 0, // format, kind session, state queued
		0, 0, 0, 0, 0, 0, 0, 0, // TTL 0
		0, 0, 0, 0, 0, 0, 0, 0, // granted: not recorded
		0, 0, 0, 0, // adoptions
		0, 0, 0x27, 0x10, // holder's session timeout 10000 ms
		0x01, 0x02, // slot 258
		2, 'h', '1', // holder
		0,        // node
		'o', 'w', // owner
	}
	want := zookeeper.Record{Format: 3, Timeout: 10 * time.Second, Slot: 258, Holder: "h1", Owner: "ow"}
	got, err := zookeeper.DecodeRecord(golden)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Equal(t, golden, zookeeper.EncodeRecord(want))

	tooHigh := append([]byte(nil), golden...)
	tooHigh[27], tooHigh[28] = byte(lock.MaxPermits>>8), byte(lock.MaxPermits&0xff)
	_, err = zookeeper.DecodeRecord(tooHigh)
	assert.Error(t, err, "a slot of MaxPermits or more")
	_, err = zookeeper.DecodeRecord(golden[:30])
	assert.Error(t, err, "a format-3 record cut in its slot or holder")
}

// TestNodeData_Format1: the nodes of Lockers of the earlier version still
// decode: a queued claim without holder, node or grant time.
func TestNodeData_Format1(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want zookeeper.Record
	}{
		{[]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, zookeeper.Record{Format: 1}},
		{[]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'm', 'e'}, zookeeper.Record{Format: 1, Owner: "me"}},
		{[]byte{1, 1, 0, 0, 0, 0, 0, 0, 0xea, 0x60, 'j', 'o', 'b'}, zookeeper.Record{Format: 1, TTL: time.Minute, Owner: "job"}},
	} {
		got, err := zookeeper.DecodeRecord(c.b)
		require.NoError(t, err, "%v", c.b)
		assert.Equal(t, c.want, got)
	}
}

func TestNodeData_Bad(t *testing.T) {
	v2 := zookeeper.EncodeRecord(zookeeper.Record{Holder: "h", Node: "n"})
	withByte := func(i int, v byte) []byte {
		b := append([]byte(nil), v2...)
		b[i] = v
		return b
	}
	for _, bad := range [][]byte{
		nil, {1}, {3, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{1, 0, 0, 0, 0, 0, 0, 0, 0, 1}, {1, 1, 0, 0, 0, 0, 0, 0, 0, 0}, {1, 7, 0, 0, 0, 0, 0, 0, 0, 0},
		v2[:20],            // short
		withByte(1, 1),     // TTL kind with TTL 0
		withByte(2, 3),     // unknown state
		withByte(11, 0x80), // grant time beyond int64
		withByte(27, 65),   // holder longer than 64
		withByte(27, 9),    // holder past the end
		v2[:29],            // no node length
	} {
		_, err := zookeeper.DecodeRecord(bad)
		assert.Error(t, err, "%v", bad)
	}
}

func FuzzDecodeData(f *testing.F) {
	f.Add(zookeeper.EncodeRecord(zookeeper.Record{Owner: "owner", Holder: "h", Node: "n"}))
	f.Add(zookeeper.EncodeRecord(zookeeper.Record{TTL: time.Second, State: zookeeper.StateRevoked, Granted: 7}))
	f.Add(zookeeper.EncodeRecord(zookeeper.Record{Format: 3, Slot: 5, Holder: "h"}))
	f.Add([]byte{1, 1, 255, 255, 255, 255, 255, 255, 255, 255})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := zookeeper.DecodeRecord(b)
		if err != nil {
			return
		}
		if r.Format == 1 { // re-encode by hand: only format 2 is written
			assert.Equal(t, b[10:], []byte(r.Owner))
			assert.Equal(t, r.TTL > 0, b[1] == 1)
			return
		}
		assert.Equal(t, b, zookeeper.EncodeRecord(r), "a decoded record re-encodes to the same bytes")
	})
}

// TestCursor: a cursor names the last name of a page of one prefix;
// anything else is ErrInvalidOption.
func TestCursor(t *testing.T) {
	for _, c := range []struct{ prefix, last string }{{"", "a"}, {"a/", "a/b%c é"}, {"x", "x.y"}} {
		cur := zookeeper.EncodeCursor(c.prefix, c.last)
		got, err := zookeeper.DecodeCursor(c.prefix, cur)
		require.NoError(t, err)
		assert.Equal(t, c.last, got)
	}
	good := zookeeper.EncodeCursor("a", "ab")
	flipped := byte('0')
	if good[4] == '0' {
		flipped = '1'
	}
	for _, c := range []struct{ prefix, cursor string }{
		{"a", "garbage"},
		{"a", "zk1."},
		{"a", good[:len(good)-1]}, // damaged name
		{"a", strings.Replace(good, "zk1.", "zk2.", 1)},
		{"a", good[:4] + string(flipped) + good[5:]}, // damaged checksum
		{"b", good},                             // another prefix
		{"", good},                              // another prefix, "" this time
		{"a", zookeeper.EncodeCursor("a", "b")}, // a name outside the prefix
	} {
		_, err := zookeeper.DecodeCursor(c.prefix, c.cursor)
		assert.ErrorIs(t, err, lock.ErrInvalidOption, "prefix %q, cursor %q", c.prefix, c.cursor)
	}
}

// FuzzEscapedPrefix: escaping is a prefix code, so List may filter on
// escaped names: p is a byte prefix of n exactly when escape(p) is a
// string prefix of escape(n).
func FuzzEscapedPrefix(f *testing.F) {
	for _, s := range [][2]string{{"a", "a-"}, {"a.", "a%2E"}, {"a/", "a/b%c é"}, {"%", "%2"}, {"é", "\xc3"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, p, n string) {
		byBytes := strings.HasPrefix(n, p)
		escaped := strings.HasPrefix(zookeeper.EscapeName(n), zookeeper.EscapeName(p))
		assert.Equal(t, byBytes, escaped, "prefix %q of %q", p, n)
	})
}
