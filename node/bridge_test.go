package node

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

func TestBridge_CorruptEntryPanics(t *testing.T) {
	b := newBridge(func([]fsm.Event) {}, nil)
	assert.Panics(t, func() {
		b.ApplyBatch([]*raft.Log{{Index: 1, Type: raft.LogCommand, Data: []byte{0xff, 0xff, 0xff}}})
	})
	unknown, err := fsm.Encode(&fsmpb.Command{}) // no op: a newer version's command
	require.NoError(t, err)
	assert.Panics(t, func() {
		b.ApplyBatch([]*raft.Log{{Index: 2, Type: raft.LogCommand, Data: unknown}})
	})
	ignorable, err := fsm.Encode(&fsmpb.Command{Ignorable: true})
	require.NoError(t, err)
	out := b.ApplyBatch([]*raft.Log{{Index: 3, Type: raft.LogCommand, Data: ignorable}})
	require.Len(t, out, 1)
	assert.Equal(t, fsmpb.Code_CODE_UNSPECIFIED, out[0].(entryResult).res.GetCode())
}

func TestBridge_RestoreRejectsCorruptSnapshot(t *testing.T) {
	b := newBridge(func([]fsm.Event) {}, nil)
	for _, data := range [][]byte{nil, {1, 2, 3}, append(make([]byte, 8), 0xff, 0xff)} {
		err := b.Restore(io.NopCloser(bytes.NewReader(data)))
		assert.ErrorIs(t, err, fsm.ErrCorrupt, "%x", data)
	}
}
