package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// TestNode_RestartOnUnknownEntryNamesIt: New on a log holding an entry
// this build cannot apply fails with the halt's reason (the entry, the
// protocol), not "not ready: locker closed": the logger is silent by
// default, so New's error is all the operator sees.
func TestNode_RestartOnUnknownEntryNamesIt(t *testing.T) {
	dir := t.TempDir()
	n, err := New(Config{DataDir: dir})
	require.NoError(t, err)
	unknown, err := fsm.Encode(&fsmpb.Command{})
	require.NoError(t, err)
	_, _ = n.commit(unknown, time.Second)
	waitFor(t, func() bool { _, err := n.NewLocker(testCtx(t)); return err != nil })
	_ = n.Abort()

	start := time.Now()
	n2, err := New(Config{DataDir: dir, StartTimeout: 5 * time.Second})
	if err == nil {
		_ = n2.Abort()
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot be applied", "after %v", time.Since(start))
	assert.Contains(t, err.Error(), fmt.Sprintf("protocol %d", fsm.Protocol))
}
