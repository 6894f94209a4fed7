package redis

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// TestTerm_ResignAfterItsEnd: a term whose local deadline passes between
// Release's openLease and its resignation is not resigned: Release
// reports ErrNotHeld with the expiry as the cause, not success.
func TestTerm_ResignAfterItsEnd(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l, err := New(Config{Addr: srv.Addr(), SessionTTL: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	ctx := t.Context()
	tm, err := l.Campaign(ctx, "late", "v", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	term := tm.(*term)
	c := term.c
	require.NoError(t, c.openLease(&term.Core)) // Release's first step: the term is held
	c.mu.Lock()
	term.expire() // its local deadline fires now, before the resignation
	c.mu.Unlock()
	err = term.resign(ctx) // the rest of Release
	require.ErrorIs(t, err, lock.ErrNotHeld)
	require.ErrorIs(t, err, lock.ErrExpired)
}
