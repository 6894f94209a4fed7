package history_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
)

// TestElectionRecorder: the recorder around a real (one-node) Elector
// records a term's Campaign, looks, Proclaim and resign, a Campaign that
// ends without an answer, an observer's states and Leader's empty seat;
// the history passes CheckElection.
func TestElectionRecorder(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	c.WaitProtocol(5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := c.Node(0).Elector()
	rec := h.NewElectionRecorder()

	octx, stopObserving := context.WithCancel(ctx)
	states, err := e.Observe(octx, "e")
	require.NoError(t, err)
	observed := make(chan struct{})
	go func() {
		defer close(observed)
		for info := range states {
			rec.Sight(1, 1, info)
		}
	}()

	held, err := rec.Campaign(ctx, 0, e, "e", "a", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	assert.True(t, held.Look())
	require.NoError(t, held.Proclaim(ctx, "a/p"))
	require.NoError(t, held.Resign(ctx))
	assert.False(t, held.Look())

	gone, cancelGone := context.WithCancel(ctx)
	cancelGone()
	_, err = rec.Campaign(gone, 1, e, "e", "b")
	require.Error(t, err)
	_, err = rec.Campaign(ctx, 2, e, "e", "bad\x00value\xff")
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	_, err = rec.Leader(ctx, 9, e, "e")
	require.ErrorIs(t, err, lock.ErrNoLeader)

	// The observer's stream: the empty seat, "a", "a/p", the empty seat.
	require.Eventually(t, func() bool {
		n := 0
		for _, s := range rec.History().Sightings {
			if s.Observer == 1 {
				n++
			}
		}
		return n >= 4
	}, 10*time.Second, 5*time.Millisecond, "the observer receives four states")
	stopObserving()
	<-observed

	hist := rec.History()
	require.Len(t, hist.Campaigns, 3)
	a := hist.Campaigns[0]
	assert.Equal(t, h.OK, a.Outcome)
	assert.NotZero(t, a.Token)
	assert.Greater(t, a.LastLive, a.Return)
	require.Len(t, a.Proclaims, 1)
	assert.Equal(t, h.Step{Value: "a/p", Outcome: h.OK, Call: a.Proclaims[0].Call, Return: a.Proclaims[0].Return}, a.Proclaims[0])
	require.NotNil(t, a.Resign)
	assert.Equal(t, h.OK, a.Resign.Outcome)
	assert.Greater(t, a.EndSeen, a.Resign.Return, "the look after the resign found the term ended")
	assert.Contains(t, a.EndErr, "released")
	assert.Equal(t, h.Unknown, hist.Campaigns[1].Outcome, "a Campaign whose ctx ended may have been granted")
	assert.Equal(t, h.Failed, hist.Campaigns[2].Outcome, "an invalid value is refused")

	seen := map[int][]string{}
	for _, s := range hist.Sightings {
		seen[s.Observer] = append(seen[s.Observer], s.Value)
		if s.Value == "a" || s.Value == "a/p" {
			assert.Equal(t, a.Token, s.Token)
		}
	}
	assert.Equal(t, map[int][]string{1: {"", "a", "a/p", ""}, 9: {""}}, seen, "observer 1's four states; Leader's empty seat")
	res := h.CheckElection(hist, 0)
	assert.True(t, res.OK(), "%s", res)
}
