package node

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
)

// TestBridge_PreloadedOnlyForItsOwnRestore: the state the start-up checks
// decoded is taken by raft.NewRaft's restore of the node's own snapshot,
// once; a Restore that is not the node's own (an install from the leader,
// a backup) decodes what it is given, and preload(nil) drops it.
func TestBridge_PreloadedOnlyForItsOwnRestore(t *testing.T) {
	garbage := func() io.ReadCloser { return io.NopCloser(strings.NewReader("not a snapshot")) }
	checked := &decodedSnapshot{state: fsm.New(), applied: 7}

	b := newBridge(func([]fsm.Event) {}, nil, func(error) {})
	b.preload(checked)
	require.Error(t, b.Restore(garbage()), "not the node's own restore: the reader is decoded")
	assert.Nil(t, b.preloaded, "taken once, used or not")

	b = newBridge(func([]fsm.Event) {}, nil, func(error) {})
	b.preload(checked)
	b.ownRestore()
	require.NoError(t, b.Restore(garbage()), "the node's own restore takes the checked state")
	assert.Same(t, checked.state, b.state)
	assert.Equal(t, uint64(7), b.applied)
	b.ownRestore()
	require.Error(t, b.Restore(garbage()), "only once")

	b = newBridge(func([]fsm.Event) {}, nil, func(error) {})
	b.preload(checked)
	b.preload(nil)
	b.ownRestore()
	require.Error(t, b.Restore(garbage()), "dropped")
}
