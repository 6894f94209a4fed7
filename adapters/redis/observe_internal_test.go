package redis

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// TestObserver_Collapse: the buffer keeps 64 undelivered states; the 65th
// replaces them and counts them (their own Skipped included), so the
// reader gets the latest state and can account for every one.
func TestObserver_Collapse(t *testing.T) {
	o := &observer{}
	const states = 200
	for i := 1; i <= states; i++ {
		o.take(seat{LeaderInfo: lock.LeaderInfo{Election: "e", Token: 1, Value: fmt.Sprint(i)}, ver: uint64(i)}, 0)
	}
	// Collapses at the 65th, 129th and 193rd state; 194..200 follow.
	require.Len(t, o.pending, 8)
	assert.Equal(t, "193", o.pending[0].Value)
	assert.Equal(t, 192, o.pending[0].Skipped)
	assert.Equal(t, "200", o.pending[7].Value)
	total := 0
	for _, p := range o.pending {
		total += 1 + p.Skipped
	}
	assert.Equal(t, states, total, "every state delivered or counted")
}
