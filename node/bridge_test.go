package node

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// TestBridge_HaltsOnEntryItCannotApply: an entry that does not decode, or
// of a command this build does not know, halts the bridge (it used to
// panic, taking the application down): the entries before it apply, it and
// every later one do not, the halt is reported once with the entry and
// the protocol, and no snapshot or restore happens after it.
func TestBridge_HaltsOnEntryItCannotApply(t *testing.T) {
	barrier, err := fsm.Encode(&fsmpb.Command{Ignorable: true})
	require.NoError(t, err)
	unknown, err := fsm.Encode(&fsmpb.Command{}) // no op: a newer version's command
	require.NoError(t, err)
	for _, bad := range [][]byte{{0xff, 0xff, 0xff}, unknown} {
		var halts []error
		b := newBridge(func([]fsm.Event) {}, nil, func(err error) { halts = append(halts, err) })
		out := b.ApplyBatch([]*raft.Log{
			{Index: 1, Type: raft.LogCommand, Data: barrier},
			{Index: 2, Type: raft.LogCommand, Data: bad},
			{Index: 3, Type: raft.LogCommand, Data: barrier},
		})
		require.Len(t, out, 3)
		assert.Equal(t, fsmpb.Code_CODE_UNSPECIFIED, out[0].(entryResult).res.GetCode(), "the entry before applies")
		assert.Nil(t, out[1], "the bad entry is not applied")
		assert.Nil(t, out[2], "nothing after it is applied")
		require.Len(t, halts, 1)
		assert.ErrorContains(t, halts[0], "log entry 2")
		assert.ErrorContains(t, halts[0], fmt.Sprintf("protocol %d", fsm.Protocol))
		assert.Equal(t, uint64(1), b.applied)

		out = b.ApplyBatch([]*raft.Log{{Index: 4, Type: raft.LogCommand, Data: barrier}})
		assert.Nil(t, out[0], "a later batch is not applied either")
		assert.Len(t, halts, 1, "the halt is reported once")
		_, err := b.Snapshot()
		assert.Error(t, err, "no snapshot after a halt")
		snap, err := fsm.New().Snapshot()
		require.NoError(t, err)
		err = b.Restore(io.NopCloser(bytes.NewReader(append(make([]byte, 8), snap...))))
		assert.Error(t, err, "no restore after a halt")
	}
}

func TestBridge_RestoreRejectsCorruptSnapshot(t *testing.T) {
	b := newBridge(func([]fsm.Event) {}, nil, func(error) {})
	for _, data := range [][]byte{nil, {1, 2, 3}, append(make([]byte, 8), 0xff, 0xff)} {
		err := b.Restore(io.NopCloser(bytes.NewReader(data)))
		assert.ErrorIs(t, err, fsm.ErrCorrupt, "%x", data)
	}
}
