package redis

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// heldLease returns a session lease of c with TTL px in Redis whose local
// deadline is at (no server involved).
func heldLease(c *instance, px time.Duration, at time.Time) *lease {
	l := &lease{c: c, px: px}
	l.Core, l.ender = leasecore.New("name", 7)
	c.mu.Lock()
	defer c.mu.Unlock()
	l.dl.Start(at, l.onDeadline)
	c.leases[l] = struct{}{}
	return l
}

// TestLease_RenewalMovesDeadlineLaterOnly (I3): an acknowledged renewal
// moves the local deadline to its send time + TTL − margin, never earlier.
func TestLease_RenewalMovesDeadlineLaterOnly(t *testing.T) {
	c := &instance{leases: make(map[*lease]struct{}), log: slog.New(slog.DiscardHandler)}
	const px = time.Minute
	start := time.Now().Add(px / 2)
	l := heldLease(c, px, start)
	defer func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		l.end(lock.ErrReleased)
	}()

	require.NoError(t, l.settleRenewal([]any{"ok"}, time.Now().Add(-px)))
	assert.Equal(t, start, l.dl.At(), "an older renewal must not move the deadline earlier")
	sent := time.Now()
	require.NoError(t, l.settleRenewal([]any{"ok"}, sent))
	assert.Equal(t, sent.Add(px-driftMargin(px)), l.dl.At())
}

// TestLease_RenewalAfterDeadline (I3): an "ok" answered after the local
// deadline has passed saves nothing: the renewal reports ErrNotHeld, the
// lease ends with ErrLost, and it is recorded once, to be deleted in the
// store by token.
func TestLease_RenewalAfterDeadline(t *testing.T) {
	c := &instance{leases: make(map[*lease]struct{}), log: slog.New(slog.DiscardHandler)}
	l := heldLease(c, time.Second, time.Now().Add(-time.Millisecond))

	err := l.settleRenewal([]any{"ok"}, time.Now())
	require.ErrorIs(t, err, lock.ErrNotHeld)
	<-l.Done()
	require.ErrorIs(t, l.Err(), lock.ErrLost)
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Len(t, c.stale, 1)
	assert.Equal(t, staleLease{name: "name", token: 7}, staleLease{name: c.stale[0].name, token: c.stale[0].token})
	assert.Empty(t, c.leases)
}

// TestKeepStale_UntilStoreExpiry (R2): a lease that ended locally is
// deleted in the store by token, retried past maxStaleTries until its copy
// there would have expired by itself (a Refresh applied late extends it by
// a whole TTL).
func TestKeepStale_UntilStoreExpiry(t *testing.T) {
	c := &instance{}
	c.keepStale([]staleLease{
		{name: "long", tries: maxStaleTries, until: time.Now().Add(time.Hour)},
		{name: "short", tries: maxStaleTries},
	})
	require.Len(t, c.stale, 1)
	assert.Equal(t, "long", c.stale[0].name)
}
