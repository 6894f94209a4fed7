package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// TestNode_StopsOnEntryItCannotApply: a committed entry this build does not
// know (a newer version's command) stops the node instead of panicking the
// application: its leases end with ErrLost and its Lockers are closed.
func TestNode_StopsOnEntryItCannotApply(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	held, err := n.Acquire(ctx, "x")
	require.NoError(t, err)

	unknown, err := fsm.Encode(&fsmpb.Command{}) // what a newer leader might write
	require.NoError(t, err)
	_, _ = n.commit(unknown, time.Second) // bypasses the door on purpose

	select {
	case <-held.Done():
	case <-ctx.Done():
		t.Fatal("the node went on after an entry it cannot apply")
	}
	assert.ErrorIs(t, held.Err(), lock.ErrLost)
	waitFor(t, func() bool {
		_, err := n.NewLocker(ctx)
		return errors.Is(err, lock.ErrClosed)
	})
}

// TestNode_ProposesOnlyWhatEveryVoterSpeaks: a single node playing this
// build refuses a command that a newer one (fsm.Protocol+1) introduced,
// before the log; once it speaks the newer protocol the command goes
// through.
func TestNode_ProposesOnlyWhatEveryVoterSpeaks(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	needs := func(cmd *fsmpb.Command) int {
		if cmd.GetAcquire() != nil {
			return fsm.Protocol + 1
		}
		return fsm.Needs(cmd)
	}
	PlayProtocol(n, fsm.Protocol, needs)
	_, err := n.TryAcquire(ctx, "x")
	require.ErrorIs(t, err, ErrUnsupported)
	info, err := n.Inspect(ctx, "x")
	require.NoError(t, err)
	assert.False(t, info.Held)

	PlayProtocol(n, fsm.Protocol+1, needs)
	l, err := n.TryAcquire(context.Background(), "x")
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))
}

// TestProtocols_BoundedByStrangers: the IDs a stranger claims cannot grow
// the leader's table without bound, and a member already known is still
// updated when it is full.
func TestProtocols_BoundedByStrangers(t *testing.T) {
	var p protocols
	p.heard("n1", 1)
	for i := range 2 * maxHeard {
		p.heard(fmt.Sprintf("stranger-%d", i), 7)
	}
	assert.Len(t, p.seen, maxHeard)
	p.heard("n1", 2)
	assert.Equal(t, 2, p.of("n1"))
	assert.Equal(t, 1, p.of("unheard"), "a member not heard from counts as the oldest protocol")
	p.heard(strings.Repeat("x", 300), 5)
	assert.Equal(t, 1, p.of(strings.Repeat("x", 300)), "an ID no member can have is not recorded")
}

// TestNode_RevokeBelowLevel2: a Revoke or Adopt that the leader lets
// through but the state machine answers UNSUPPORTED (the cluster has not
// committed level 2: here a node that announces protocol 1 yet believes
// every command needs only 1) is an error wrapping lock.ErrUnsupported
// that says so, and changes nothing.
func TestNode_RevokeBelowLevel2(t *testing.T) {
	ctx := testCtx(t)
	cfg := Config{}
	cfg.played = &playedBuild{protocol: 1, needs: func(*fsmpb.Command) int { return 1 }}
	n := newNode(t, cfg)
	require.Equal(t, 1, n.Stats().Protocol)
	l, err := n.Acquire(ctx, "x", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	err = n.Revoke(ctx, "x", l.Token())
	require.ErrorIs(t, err, lock.ErrUnsupported)
	assert.Contains(t, err.Error(), "protocol level 2")
	_, err = n.Adopt(ctx, "x", l.Token())
	require.ErrorIs(t, err, lock.ErrUnsupported)
	assert.NoError(t, l.Err())
	require.NoError(t, l.Release(ctx))
}
