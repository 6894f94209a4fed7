package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
)

// TestAges_TokensPerName: two names can carry one token (one entry, the
// end of a session, hands both over at its index: fsm/DESIGN.md,
// "Protocol 4"); the end of one grant must not drop the age of the other.
func TestAges_TokensPerName(t *testing.T) {
	a := newAges()
	t0 := time.Now()
	a.note([]fsm.Event{{Kind: fsm.EventGranted, Name: "a", Claim: 3, Token: 7, Generation: 7}}, t0, true)
	a.note([]fsm.Event{{Kind: fsm.EventGranted, Name: "b", Claim: 7, Token: 7, Generation: 7}}, t0.Add(time.Second), true)
	a.note([]fsm.Event{{Kind: fsm.EventEnded, Name: "b", Claim: 7, Token: 7, Generation: 7}}, t0.Add(2*time.Second), true)
	now := t0.Add(5 * time.Second)
	assert.Equal(t, 5*time.Second, a.since("a", 7, 0, now, now), "a's grant was seen live at t0")
	assert.Equal(t, time.Duration(0), a.since("b", 7, 0, now, now), "b's grant ended")
	assert.Equal(t, 1, a.size())
}

// TestExpirer_FlooredGrantHasNoHandoffGrace: a TTL lease granted by its own
// Acquire entry is expired after its TTL, though a floor made its token
// differ from its claim; only a hand-off from the queue gets the grace.
func TestExpirer_FlooredGrantHasNoHandoffGrace(t *testing.T) {
	e := newExpirer(time.Hour)
	e.mu.Lock()
	e.leader = true
	e.mu.Unlock()
	e.handle([]fsm.Event{{Kind: fsm.EventGranted, Name: "x", Claim: 5, Token: 101, Generation: 5, TTL: 10 * time.Millisecond}})
	select {
	case <-e.wake:
	case <-time.After(30 * time.Second):
		require.Fail(t, "the lease's expiry was not proposed within 30 s of its 10 ms TTL")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	require.Len(t, e.pending, 1)
	exp := e.pending[0].cmd.GetExpireLease()
	require.NotNil(t, exp)
	assert.Equal(t, "x", exp.GetName())
	assert.Equal(t, uint64(101), exp.GetToken())
	assert.Equal(t, uint64(5), exp.GetGeneration())
	e.leases[leaseKey{"x", 101}].t.Stop()
}
