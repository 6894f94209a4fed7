package node

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
)

// fakeChatter is a chatter on a clock the test moves.
func fakeChatter() (*chatter, *time.Time) {
	c := newChatter()
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	return c, &now
}

func TestChatter_unreachablePeer(t *testing.T) {
	c, now := fakeChatter()
	hb := func(peer string) (slog.Level, []any) {
		return c.level(slog.LevelError, "failed to heartbeat to", []any{"peer", peer, "error", errors.New("refused")})
	}
	lv, extra := hb("10.0.0.2:7000")
	assert.Equal(t, slog.LevelWarn, lv, "the first line about a peer: Warn, not Error")
	assert.Empty(t, extra)
	lv, _ = hb("10.0.0.3:7000")
	assert.Equal(t, slog.LevelWarn, lv, "another peer is news too")
	for range 5 {
		*now = now.Add(time.Second)
		lv, _ = hb("10.0.0.2:7000")
		assert.Equal(t, slog.LevelDebug, lv, "repeats within the reminder interval are Debug")
	}
	*now = now.Add(chatterRemind)
	lv, extra = hb("10.0.0.2:7000")
	assert.Equal(t, slog.LevelWarn, lv, "a reminder after chatterRemind")
	assert.Equal(t, []any{"repeated", 5, "since", chatterRemind}, extra)
	*now = now.Add(time.Second)
	lv, _ = hb("10.0.0.2:7000")
	assert.Equal(t, slog.LevelDebug, lv, "and Debug again after the reminder")

	*now = now.Add(chatterQuiet)
	lv, extra = hb("10.0.0.2:7000")
	assert.Equal(t, slog.LevelWarn, lv, "after a quiet minute the peer's trouble is news again")
	assert.Empty(t, extra)
}

func TestChatter_levels(t *testing.T) {
	c, _ := fakeChatter()
	for _, tc := range []struct {
		in   slog.Level
		msg  string
		args []any
		want slog.Level
	}{
		{slog.LevelWarn, "heartbeat timeout reached, starting election", nil, slog.LevelDebug},
		{slog.LevelError, "peer has newer term, stopping replication", []any{"peer", "n2"}, slog.LevelDebug},
		{slog.LevelWarn, "rejecting vote request since we have a leader", nil, slog.LevelDebug},
		{slog.LevelWarn, "failed to get previous log", []any{"previous-index", 12, "last-index", 9}, slog.LevelDebug},
		{slog.LevelError, "failed to take snapshot", []any{"error", fmt.Errorf("x: %w", raft.ErrNothingNewToSnapshot)}, slog.LevelDebug},
		{slog.LevelError, "failed to take snapshot", []any{"error", errors.New("disk full")}, slog.LevelError},
		{slog.LevelWarn, "failed to contact quorum of nodes, stepping down", nil, slog.LevelWarn},
		{slog.LevelError, "failed to append to logs", []any{"error", errors.New("disk full")}, slog.LevelError},
	} {
		lv, _ := c.level(tc.in, tc.msg, tc.args)
		assert.Equal(t, tc.want, lv, tc.msg)
	}
	c.quiet.Store(true)
	lv, _ := c.level(slog.LevelError, "failed to appendEntries to", []any{"peer", "n2"})
	assert.Equal(t, slog.LevelDebug, lv, "a known routine line is Debug once the node is stopping")
	lv, _ = c.level(slog.LevelError, "failed to get log", []any{"error", fmt.Errorf("x: %w", raft.ErrRaftShutdown)})
	assert.Equal(t, slog.LevelDebug, lv, "a line about the node's own shutdown is Debug once it is stopping")
	lv, _ = c.level(slog.LevelError, "failed to append to logs", []any{"error", errors.New("disk full")})
	assert.Equal(t, slog.LevelError, lv, "a real error keeps its level while the node stops")
}

func TestChatter_bounded(t *testing.T) {
	c, now := fakeChatter()
	for i := range chatterPeers + 10 {
		*now = now.Add(time.Millisecond)
		c.level(slog.LevelError, "failed to heartbeat to", []any{"peer", fmt.Sprint(i)})
	}
	assert.Len(t, c.peers, chatterPeers)
}
