package node

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func expirerLeads(e *expirer) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// TestNode_CoalescedLossAndWinStopsLeadingFirst (issue 11, item 10): Raft
// keeps only the latest LeaderCh value, so a loss then a new win while the
// watcher was busy arrives as one true. Until the new term's barrier has
// applied, the node must not serve reads or keep-alives, nor run the old
// term's expiry timers.
func TestNode_CoalescedLossAndWinStopsLeadingFirst(t *testing.T) {
	n := newNode(t, Config{})
	require.True(t, n.leading.isOpen())
	require.True(t, expirerLeads(n.exp))

	inBarrier := make(chan struct{})
	proceed := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.onLeadership(true, func() error { // the coalesced notification
			close(inBarrier)
			<-proceed
			return n.termBarrier()
		})
	}()
	<-inBarrier
	assert.False(t, n.leading.isOpen(), "the gate must be shut until the new term's barrier applied")
	assert.False(t, expirerLeads(n.exp), "the old term's timers must be stopped until the barrier applied")
	_, err := n.readIndex()
	assert.ErrorIs(t, err, errNotLeader, "no read index before the barrier")
	close(proceed)
	<-done
	assert.True(t, n.leading.isOpen())
	assert.True(t, expirerLeads(n.exp))
	_, err = n.readIndex()
	assert.NoError(t, err)
}

// TestNode_FailedBarrierRetriedWhileLeading (issue 11, item 8): a term
// barrier that fails while this node is still the leader of that term is
// retried; given up, the node would lead with its gate shut and no expiry
// timers until leadership moved.
func TestNode_FailedBarrierRetriedWhileLeading(t *testing.T) {
	n := newNode(t, Config{})
	n.onLeadership(false, nil)
	require.False(t, n.leading.isOpen())

	calls := 0
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		n.onLeadership(true, func() error {
			calls++
			if calls <= 2 {
				return errors.New("injected: barrier failed")
			}
			return n.termBarrier()
		})
	}()
	select {
	case <-finished:
	case <-time.After(15 * time.Second):
		t.Fatal("onLeadership did not return")
	}
	assert.Equal(t, 3, calls)
	assert.True(t, n.leading.isOpen(), "leading again once a retried barrier applied")
	assert.True(t, expirerLeads(n.exp))
}
