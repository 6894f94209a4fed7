package zookeeper_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// testKillMemberMidHold: a lease survives the crash of the ensemble member
// its Locker is connected to (no loss): the session moves to another
// member within the session timeout.
func testKillMemberMidHold(t *testing.T, e *testserver.Ensemble) {
	const timeout = 4 * time.Second
	leader := e.Leader(t)
	var followers []string
	for i := range e.Len() {
		if i != leader {
			followers = append(followers, e.Member(i).Addr())
		}
	}
	// Connect to the followers only, so that the crash moves the session
	// without an election.
	l := newLocker(t, followers, timeout)
	observer := newLocker(t, e.Servers(), timeout)
	const name = "kill-member"
	ctx := ctxFor(t, time.Minute)
	held, err := l.Acquire(ctx, name, lock.WithOwner("survivor"))
	require.NoError(t, err)

	connected := zookeeper.Conn(l).Server()
	var victim *testserver.ZooKeeper
	for i := range e.Len() {
		if e.Member(i).Addr() == connected {
			victim = e.Member(i)
		}
	}
	require.NotNil(t, victim, "connected to %s", connected)
	killed := time.Now()
	victim.Kill()
	eventually(t, 20*time.Second, "the session moved to another member", func() bool {
		return zookeeper.Conn(l).Server() != connected && held.Refresh(ctx) == nil
	})
	t.Logf("session moved %v after the member was killed", time.Since(killed).Round(time.Millisecond))
	// Hold for longer than the session timeout: the session was not expired.
	waitPast(t, killed, timeout+time.Second)
	require.NoError(t, held.Refresh(ctx))
	assert.NoError(t, held.Err(), "the lease must survive the crash of one member")
	info, err := observer.Inspect(ctx, name)
	require.NoError(t, err)
	assertHeldBy(t, info, held, "survivor", l)
	require.NoError(t, held.Release(ctx))
	victim.Restart()
}

// testKillLeaderMidHold: a lease survives the crash of the leader. The
// ensemble elects a new leader, which gives every session a fresh timeout;
// the Locker must not declare the lease lost meanwhile, so the session
// timeout must leave room for the election: here 20 s, jeopardy after
// 10 s. An election usually takes about a second here, but took 5.2 s once
// on a loaded 2-core machine right after a member restart (ZooKeeper's
// election backs off its notifications exponentially), which ended a
// lease whose jeopardy came after 5 s.
func testKillLeaderMidHold(t *testing.T, e *testserver.Ensemble) {
	const timeout = 20 * time.Second
	e.WaitQuorum(t)
	l := newLocker(t, e.Servers(), timeout)
	const name = "kill-leader"
	ctx := ctxFor(t, time.Minute)
	held, err := l.Acquire(ctx, name, lock.WithOwner("survivor"))
	require.NoError(t, err)

	leader := e.Member(e.Leader(t))
	killed := time.Now()
	leader.Kill()
	eventually(t, 30*time.Second, "the ensemble serves writes again", func() bool {
		if err := held.Err(); err != nil {
			t.Fatalf("the lease ended %v after the leader was killed: %v", time.Since(killed).Round(time.Millisecond), err)
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return held.Refresh(rctx) == nil
	})
	t.Logf("leader killed: the lease was confirmed again after %v (session timeout %v)", time.Since(killed).Round(time.Millisecond), timeout)
	assert.NoError(t, held.Err(), "the lease must survive the crash of the leader")
	observer := newLocker(t, e.Servers(), timeout)
	info, err := observer.Inspect(ctx, name)
	require.NoError(t, err)
	assertHeldBy(t, info, held, "survivor", l)
	require.NoError(t, held.Release(ctx))
	leader.Restart()
}
