package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// TestNoQuorum_NotWhenCtxEndedFirst (R5): on a reachable server, every
// call whose ctx had ended before it began answers ctx's error alone.
func TestNoQuorum_NotWhenCtxEndedFirst(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	held, err := l.Acquire(ctx, "nq-ended")
	require.NoError(t, err)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	for _, call := range []struct {
		what string
		do   func() error
	}{
		{"Acquire", func() error { _, err := l.Acquire(ended, "nq-ended-free"); return err }},
		{"TryAcquire", func() error { _, err := l.TryAcquire(ended, "nq-ended-free"); return err }},
		{"Inspect", func() error { _, err := l.Inspect(ended, "nq-ended"); return err }},
		{"Refresh", func() error { return held.Refresh(ended) }},
		{"Release", func() error { return held.Release(ended) }},
	} {
		err := call.do()
		assert.ErrorIs(t, err, context.Canceled, call.what)
		assert.NotErrorIs(t, err, lock.ErrNoQuorum, call.what+" with an ended ctx on a reachable server")
	}
	require.NoError(t, held.Release(ctx))
}
