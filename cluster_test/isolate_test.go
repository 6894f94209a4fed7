package clustertest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// TestIsolateHolder: the holder's node is cut off from the cluster while a
// waiter on another node queues. The leader expires the holder's session
// and hands the name to the waiter; I3 says the holder's lease ended first,
// I2 that the waiter's token is larger.
func TestIsolateHolder(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := newCluster(t, 3)
	li := c.Leader()
	h, w := (li+1)%3, (li+2)%3 // both followers
	holder, err := c.Node(h).Acquire(ctx, "iso")
	require.NoError(t, err)

	type result struct {
		lease      lock.Lease
		err        error
		holderDone bool // holder's Done closed when the waiter returned
		holderErr  error
		at         time.Time
	}
	got := make(chan result, 1)
	go func() {
		l, err := c.Node(w).Acquire(ctx, "iso")
		r := result{lease: l, err: err, at: time.Now(), holderErr: holder.Err()}
		select {
		case <-holder.Done():
			r.holderDone = true
		default:
		}
		got <- r
	}()
	require.Eventually(t, func() bool {
		info, err := c.Node(li).Inspect(ctx, "iso")
		return err == nil && info.Waiters == 1
	}, 10*time.Second, 5*time.Millisecond)

	isolated := time.Now()
	c.net.Isolate(h)
	holderEnded := make(chan time.Duration, 1)
	go func() {
		<-holder.Done()
		holderEnded <- time.Since(isolated)
	}()
	r := <-got
	require.NoError(t, r.err)
	grant := r.at.Sub(isolated)
	assert.True(t, r.holderDone, "I3: holder's Done closed before the waiter was granted")
	assert.Error(t, r.holderErr, "I3: holder's lease Err set when the waiter was granted")
	assert.Greater(t, r.lease.Token(), holder.Token(), "I2")
	ended := <-holderEnded
	t.Logf("isolation -> holder's Done %v (err %v); isolation -> waiter granted %v; tokens %d -> %d",
		ended.Round(time.Millisecond), holder.Err(), grant.Round(time.Millisecond), holder.Token(), r.lease.Token())
	figures(t, "isolation_to_holder_done", []time.Duration{ended})
	figures(t, "isolation_to_waiter_granted", []time.Duration{grant})

	c.net.heal()
	require.NoError(t, r.lease.Release(ctx))
	c.WaitMembers(3)
	// The healed node serves again. Its default client lost its session
	// while cut off; node/DESIGN.md says it reopens one transparently, but
	// an Acquire racing the reopen has been seen failing with ErrLost
	// (session expired), so retry and log it.
	var l lock.Lease
	healed := time.Now()
	require.Eventually(t, func() bool {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		l, err = c.Node(h).Acquire(actx, "iso")
		if err != nil {
			t.Logf("after heal, Acquire on the healed node: %v", err)
		}
		return err == nil
	}, 15*time.Second, 50*time.Millisecond)
	t.Logf("heal -> acquire on the healed node %v", time.Since(healed).Round(time.Millisecond))
	assert.Greater(t, l.Token(), r.lease.Token())
	require.NoError(t, l.Release(ctx))
}
