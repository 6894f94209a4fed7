package redis_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// observe starts an Observe of election on e, ended when the test ends.
func observe(t *testing.T, e lock.Elector, election string) <-chan lock.LeaderInfo {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	ch, err := e.Observe(ctx, election)
	require.NoError(t, err)
	return ch
}

// nextState returns the next state delivered on ch.
func nextState(t *testing.T, ch <-chan lock.LeaderInfo) lock.LeaderInfo {
	t.Helper()
	select {
	case info, ok := <-ch:
		require.True(t, ok, "Observe's channel closed")
		return info
	case <-time.After(10 * time.Second):
		t.Fatal("no state observed within 10s")
	}
	panic("unreachable")
}

// campaignAsync campaigns in the background; the result arrives on the
// returned channel.
func campaignAsync(ctx context.Context, e lock.Elector, election, value string, opts ...lock.Option) <-chan termResult {
	out := make(chan termResult, 1)
	go func() {
		term, err := e.Campaign(ctx, election, value, opts...)
		out <- termResult{term, err}
	}()
	return out
}

type termResult struct {
	term lock.Term
	err  error
}

func wonTerm(t *testing.T, ch <-chan termResult) lock.Term {
	t.Helper()
	select {
	case r := <-ch:
		require.NoError(t, r.err)
		return r.term
	case <-time.After(10 * time.Second):
		t.Fatal("Campaign not elected within 10s")
	}
	panic("unreachable")
}

// TestElection_Story: elected, a second candidate waits, the resign hands
// the seat over without an empty moment and closes the old Done before
// the new Campaign returns, Leader and Observe follow, and the last
// resign empties the seat.
func TestElection_Story(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newLocker(t, srv.Addr(), 2*time.Second)
	b := newLocker(t, srv.Addr(), 2*time.Second)
	watcher := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)

	_, err := watcher.Leader(ctx, "e")
	require.ErrorIs(t, err, lock.ErrNoLeader)
	states := observe(t, watcher, "e")
	assert.Equal(t, lock.LeaderInfo{Election: "e"}, nextState(t, states), "the empty seat first")

	t1, err := a.Campaign(ctx, "e", "a:1")
	require.NoError(t, err)
	s := nextState(t, states)
	assert.Equal(t, t1.Token(), s.Token)
	assert.Equal(t, "a:1", s.Value)
	assert.Equal(t, holderOf(t, a, "e"), s.Holder)
	lead, err := watcher.Leader(ctx, "e")
	require.NoError(t, err)
	assert.Equal(t, t1.Token(), lead.Token)
	assert.Equal(t, "a:1", lead.Value)
	assert.Equal(t, s.Holder, lead.Holder)
	assert.True(t, lead.Elected())

	second := campaignAsync(ctx, b, "e", "b:1")
	waitWaiters(t, watcher, "e", 1)
	select {
	case r := <-second:
		t.Fatalf("second candidate elected while the first leads: %v", r.err)
	default:
	}

	require.NoError(t, t1.Release(ctx))
	t2 := wonTerm(t, second)
	assert.True(t, isClosed(t1.Done()), "the old term's Done closes before the next Campaign returns")
	require.ErrorIs(t, t1.Err(), lock.ErrReleased)
	assert.Greater(t, t2.Token(), t1.Token())

	s = nextState(t, states)
	assert.Equal(t, t2.Token(), s.Token, "from one term straight to the next: no empty seat in between")
	assert.Equal(t, "b:1", s.Value)
	assert.NotEqual(t, lead.Holder, s.Holder)

	require.NoError(t, t2.Release(ctx))
	assert.Equal(t, lock.LeaderInfo{Election: "e"}, nextState(t, states), "the empty seat after the last resign")
	_, err = watcher.Leader(ctx, "e")
	require.ErrorIs(t, err, lock.ErrNoLeader)
	require.ErrorIs(t, t2.Release(ctx), lock.ErrNotHeld)
}

// TestElection_FIFO: queued candidates are elected in arrival order.
func TestElection_FIFO(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	ls := []*redis.Locker{
		newLocker(t, srv.Addr(), 2*time.Second), newLocker(t, srv.Addr(), 2*time.Second),
		newLocker(t, srv.Addr(), 2*time.Second), newLocker(t, srv.Addr(), 2*time.Second),
	}
	ctx := testCtx(t)
	term, err := ls[0].Campaign(ctx, "fifo", "0")
	require.NoError(t, err)
	var queued []<-chan termResult
	for i := 1; i < len(ls); i++ {
		queued = append(queued, campaignAsync(ctx, ls[i], "fifo", fmt.Sprint(i)))
		waitWaiters(t, ls[0], "fifo", i)
	}
	for i, ch := range queued {
		require.NoError(t, term.Release(ctx))
		next := wonTerm(t, ch)
		lead, err := ls[0].Leader(ctx, "fifo")
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprint(i+1), lead.Value, "elected in arrival order")
		assert.Greater(t, next.Token(), term.Token())
		for _, later := range queued[i+1:] {
			assert.Empty(t, later, "a later candidate is still waiting")
		}
		term = next
	}
	require.NoError(t, term.Release(ctx))
}

// TestElection_Proclaim: a new value, same token, observed and read; an
// ended term's Proclaim answers ErrNotHeld.
func TestElection_Proclaim(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	term, err := l.Campaign(ctx, "p", "before")
	require.NoError(t, err)
	states := observe(t, l, "p")
	assert.Equal(t, "before", nextState(t, states).Value)

	require.NoError(t, term.Proclaim(ctx, "after"))
	s := nextState(t, states)
	assert.Equal(t, term.Token(), s.Token, "Proclaim keeps the token")
	assert.Equal(t, "after", s.Value)
	lead, err := l.Leader(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, "after", lead.Value)
	assert.Equal(t, term.Token(), lead.Token)

	require.ErrorIs(t, term.Proclaim(ctx, strings.Repeat("v", lock.MaxOwnerLen+1)), lock.ErrInvalidOption)
	require.ErrorIs(t, term.Proclaim(ctx, "a\xffb"), lock.ErrInvalidOption)
	require.NoError(t, term.Release(ctx))
	require.ErrorIs(t, term.Proclaim(ctx, "late"), lock.ErrNotHeld)
	assert.Equal(t, lock.LeaderInfo{Election: "p"}, nextState(t, states))
}

// TestElection_Expiry: a term that ends without any script — a TTL term
// not refreshed, a session whose Locker stopped renewing — is observed as
// the empty seat (the observer's timer at the term's PTTL + 1 ms); with a
// candidate waiting, as the candidate's term.
func TestElection_Expiry(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	watcher := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)

	t.Run("TTL", func(t *testing.T) {
		l := newLocker(t, srv.Addr(), 2*time.Second)
		states := observe(t, watcher, "ttl")
		require.False(t, nextState(t, states).Elected())
		term, err := l.Campaign(ctx, "ttl", "short", lock.WithTTL(time.Second))
		require.NoError(t, err)
		nextTerm(t, states, term.Token())
		waitDone(t, term, 10*time.Second, "TTL term")
		require.ErrorIs(t, term.Err(), lock.ErrExpired)
		assert.Equal(t, lock.LeaderInfo{Election: "ttl"}, nextState(t, states))
	})
	t.Run("SessionLost", func(t *testing.T) {
		l := newLocker(t, srv.Addr(), 2*time.Second)
		states := observe(t, watcher, "session")
		require.False(t, nextState(t, states).Elected())
		term, err := l.Campaign(ctx, "session", "doomed")
		require.NoError(t, err)
		nextTerm(t, states, term.Token())
		redis.StopRenewals(l)
		waitDone(t, term, 10*time.Second, "session term")
		assert.Equal(t, lock.LeaderInfo{Election: "session"}, nextState(t, states))
	})
	t.Run("CandidateWaiting", func(t *testing.T) {
		l := newLocker(t, srv.Addr(), 2*time.Second)
		next := newLocker(t, srv.Addr(), 2*time.Second)
		states := observe(t, watcher, "handover")
		require.False(t, nextState(t, states).Elected())
		term, err := l.Campaign(ctx, "handover", "doomed")
		require.NoError(t, err)
		nextTerm(t, states, term.Token())
		second := campaignAsync(ctx, next, "handover", "next")
		waitWaiters(t, watcher, "handover", 1)
		redis.StopRenewals(l)
		t2 := wonTerm(t, second)
		assert.True(t, isClosed(term.Done()), "the dead leader's Done closed before the next term")
		for s := nextState(t, states); s.Token != t2.Token(); s = nextState(t, states) {
			assert.False(t, s.Elected(), "between the terms only the empty seat, got %+v", s)
		}
		require.NoError(t, t2.Release(ctx))
	})
}

// nextTerm reads states until the term of token: before it only the
// empty seat or terms of lower tokens (a grant answered too late on a
// loaded machine is given back and granted again, with a new token).
func nextTerm(t *testing.T, states <-chan lock.LeaderInfo, token uint64) {
	t.Helper()
	for s := nextState(t, states); s.Token != token; s = nextState(t, states) {
		require.Less(t, s.Token, token, "a state after the term's, before it: %+v", s)
	}
}

// TestObserve_CtxEndClosesChannel: the channel closes when ctx ends, and
// when the Locker closes.
func TestObserve_CtxEndClosesChannel(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx, cancel := context.WithCancel(testCtx(t))
	ch, err := l.Observe(ctx, "o")
	require.NoError(t, err)
	require.False(t, nextState(t, ch).Elected())
	cancel()
	requireClosed(t, ch)

	ch, err = l.Observe(testCtx(t), "o")
	require.NoError(t, err)
	require.NoError(t, l.Close())
	requireClosed(t, ch)
	_, err = l.Observe(testCtx(t), "o")
	require.ErrorIs(t, err, lock.ErrClosed)
}

// requireClosed drains ch until it closes.
func requireClosed(t *testing.T, ch <-chan lock.LeaderInfo) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("Observe's channel still open after 10s")
		}
	}
}

// TestObserve_SlowReader: a reader that does not read while 1000 changes
// happen gets states in order, the latest last, some with Skipped > 0,
// and every change accounted for (delivered or skipped).
func TestObserve_SlowReader(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	// A term of an hour: no renewal to fail on a loaded machine while the
	// 1000 Proclaims run, and no timer read at its expiry.
	term, err := l.Campaign(ctx, "slow", "v0", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	states := observe(t, l, "slow")
	require.Equal(t, "v0", nextState(t, states).Value)
	const changes = 1000
	for i := 1; i <= changes; i++ {
		require.NoError(t, term.Proclaim(ctx, fmt.Sprintf("v%d", i)))
	}
	seen, skipped, last := 0, 0, 0
	for last != changes {
		s := nextState(t, states)
		require.Equal(t, term.Token(), s.Token)
		var n int
		_, err := fmt.Sscanf(s.Value, "v%d", &n)
		require.NoError(t, err)
		require.Greater(t, n, last, "states in the store's order")
		require.Equal(t, n-last-1, s.Skipped, "Skipped counts exactly the states replaced")
		seen, skipped, last = seen+1, skipped+s.Skipped, n
	}
	assert.Equal(t, changes, seen+skipped, "every change delivered or counted as skipped")
	assert.Positive(t, skipped, "a reader 1000 changes behind gets collapsed states")
	assert.Less(t, seen, changes)
}

// TestElection_TypeMismatch: a name lives as one type; a call of the
// other fails with ErrInvalidOption naming both, both ways; a lease of an
// older version (no type) counts as a mutex.
func TestElection_TypeMismatch(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	both := func(err error, live, asked string) {
		t.Helper()
		require.ErrorIs(t, err, lock.ErrInvalidOption)
		assert.Contains(t, err.Error(), "lives as "+live)
		assert.Contains(t, err.Error(), "asked as "+asked)
	}

	mutex, err := l.Acquire(ctx, "m")
	require.NoError(t, err)
	_, err = l.Campaign(ctx, "m", "v")
	both(err, "a mutex", "an election")
	_, err = l.Leader(ctx, "m")
	both(err, "a mutex", "an election")
	states := observe(t, l, "m")
	assert.False(t, nextState(t, states).Elected(), "Observe shows a mutex's name as an empty seat")
	require.NoError(t, mutex.Release(ctx))

	term, err := l.Campaign(ctx, "e", "v")
	require.NoError(t, err)
	_, err = l.Acquire(ctx, "e")
	both(err, "an election", "a mutex")
	_, err = l.TryAcquire(ctx, "e")
	both(err, "an election", "a mutex")
	require.NoError(t, term.Release(ctx))
	again, err := l.Acquire(ctx, "e")
	require.NoError(t, err, "a free name may be used as any type")
	require.NoError(t, again.Release(ctx))

	raw := rawClient(t, srv.Addr())
	require.NoError(t, raw.HSet(ctx, redis.DefaultPrefix+"lease:old", "token", "7", "owner", "", "ttl", "0",
		"claim", "olderversion/1", "since", "0", "node", "").Err())
	require.NoError(t, raw.PExpire(ctx, redis.DefaultPrefix+"lease:old", time.Minute).Err())
	_, err = l.Campaign(ctx, "old", "v")
	both(err, "a mutex", "an election")
}

// TestElection_BadInputs: invalid names and values before any I/O, and
// Redlock mode's ErrUnsupported.
func TestElection_BadInputs(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	_, err := l.Campaign(ctx, "", "v")
	require.ErrorIs(t, err, lock.ErrInvalidName)
	_, err = l.Campaign(ctx, "e", strings.Repeat("v", lock.MaxOwnerLen+1))
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	_, err = l.Campaign(ctx, "e", "a\xffb")
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	_, err = l.Campaign(ctx, "e", "v", lock.WithTTL(-time.Second))
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	_, err = l.Leader(ctx, "bad\x00name")
	require.ErrorIs(t, err, lock.ErrInvalidName)
	_, err = l.Observe(ctx, "")
	require.ErrorIs(t, err, lock.ErrInvalidName)

	_, addrs := startRedlock(t, 3, testserver.RedisOptions{})
	r := newRedlock(t, addrs, 2*time.Second)
	_, err = r.Campaign(ctx, "e", "v")
	require.ErrorIs(t, err, lock.ErrUnsupported)
	_, err = r.Leader(ctx, "e")
	require.ErrorIs(t, err, lock.ErrUnsupported)
	_, err = r.Observe(ctx, "e")
	require.ErrorIs(t, err, lock.ErrUnsupported)
}

// TestObserve_ReadsAfterReconnect: changes whose messages the observer
// cannot get (its connection is killed in the same transaction, before
// the changes) are replaced by the read after go-redis reconnects, which
// counts them: two changes of the term (ver + 2), one delivered, one
// skipped. Then a jump to another term, whose count is unknown, carries
// Skipped 1.
func TestObserve_ReadsAfterReconnect(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	// A TTL term far longer than the wait below: the observer's timer at
	// its expiry cannot be what reads the change.
	term, err := l.Campaign(ctx, "r", "before", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	states := observe(t, l, "r")
	require.Equal(t, "before", nextState(t, states).Value)

	raw := rawClient(t, srv.Addr())
	key := redis.DefaultPrefix + "lease:r"
	_, err = raw.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.ClientKillByFilter(ctx, "TYPE", "pubsub")
		p.HSet(ctx, key, "value", "unannounced")
		p.HIncrBy(ctx, key, "ver", 2)
		return nil
	})
	require.NoError(t, err)
	s := nextState(t, states)
	assert.Equal(t, "unannounced", s.Value, "the state read after the reconnect")
	assert.Equal(t, term.Token(), s.Token)
	assert.Equal(t, 1, s.Skipped, "two changes unannounced, one delivered")

	_, err = raw.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.ClientKillByFilter(ctx, "TYPE", "pubsub")
		p.HSet(ctx, key, "token", term.Token()+5, "value", "another term")
		return nil
	})
	require.NoError(t, err)
	s = nextState(t, states)
	assert.Equal(t, "another term", s.Value, "the state read after the reconnect")
	assert.Equal(t, 1, s.Skipped, "a jump to another term: at least one state may be lost")
}

// holdReads is a go-redis hook that, once armed, holds the next EVALSHA of
// the script sha before it is sent, tells entered, and sends it when
// release is closed.
type holdReads struct {
	sha     string
	armed   *atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h holdReads) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h holdReads) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}
func (h holdReads) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if args := cmd.Args(); len(args) > 1 && args[0] == "evalsha" && args[1] == h.sha && h.armed.CompareAndSwap(true, false) {
			close(h.entered)
			<-h.release
		}
		return next(ctx, cmd)
	}
}

// TestObserve_ChangesDuringRead: changes published after the observer
// resubscribed but before its read runs are delivered each, in order,
// before the read's state is weighed (at its marker): the read does not
// replace them unseen.
func TestObserve_ChangesDuringRead(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	hold := holdReads{sha: redis.LeaderScriptHash, armed: new(atomic.Bool),
		entered: make(chan struct{}), release: make(chan struct{})}
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	client.AddHook(hold)
	t.Cleanup(func() { _ = client.Close() })
	watcher, err := redis.New(redis.Config{Client: client, SessionTTL: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = watcher.Close() })
	var once sync.Once
	letGo := func() { once.Do(func() { close(hold.release) }) }
	t.Cleanup(letGo) // before watcher.Close, whatever fails
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	term, err := l.Campaign(ctx, "during", "v0", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	states := observe(t, watcher, "during")
	require.Equal(t, "v0", nextState(t, states).Value)

	hold.armed.Store(true)
	require.NoError(t, rawClient(t, srv.Addr()).ClientKillByFilter(ctx, "TYPE", "pubsub").Err())
	select {
	case <-hold.entered: // resubscribed; its read is held
	case <-time.After(10 * time.Second):
		t.Fatal("the observer did not read within 10s of its reconnect")
	}
	require.NoError(t, term.Proclaim(ctx, "v1"))
	require.NoError(t, term.Proclaim(ctx, "v2"))
	letGo()
	for _, want := range []string{"v1", "v2"} {
		s := nextState(t, states)
		assert.Equal(t, want, s.Value)
		assert.Zero(t, s.Skipped)
	}
}

// holdReplies is a go-redis hook that holds the reply of every EVALSHA of
// the script sha that ran (not a NOSCRIPT) until release is closed: the
// store has run the script, the caller has not heard.
type holdReplies struct {
	sha     string
	release chan struct{}
}

func (h holdReplies) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h holdReplies) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}
func (h holdReplies) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		if args := cmd.Args(); err == nil && len(args) > 1 && args[0] == "evalsha" && args[1] == h.sha {
			<-h.release
		}
		return err
	}
}

// TestElection_ResignEndsTermFirst: the resigning term's Done is closed
// before its release reaches the store, so it is closed when the next
// candidate, handed the seat by that release, returns from Campaign —
// even though the resigner has not yet heard the store's reply.
func TestElection_ResignEndsTermFirst(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	hold := holdReplies{sha: redis.ReleaseScriptHash, release: make(chan struct{})}
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	client.AddHook(hold)
	t.Cleanup(func() { _ = client.Close() })
	a, err := redis.New(redis.Config{Client: client, SessionTTL: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	var once sync.Once
	letGo := func() { once.Do(func() { close(hold.release) }) }
	t.Cleanup(letGo) // before a.Close, whatever fails
	b := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)

	warm, err := a.Campaign(ctx, "warm", "a") // its release loads the script: EVAL, not held
	require.NoError(t, err)
	require.NoError(t, warm.Release(ctx))
	first, err := a.Campaign(ctx, "first", "a")
	require.NoError(t, err)
	second := campaignAsync(ctx, b, "first", "b")
	waitWaiters(t, b, "first", 1)
	resigned := make(chan error, 1)
	go func() { resigned <- first.Release(ctx) }()
	next := wonTerm(t, second)
	assert.True(t, isClosed(first.Done()), "the resigned term's Done is closed when the next term begins")
	letGo()
	require.NoError(t, <-resigned)
	require.NoError(t, next.Release(ctx))
}

// TestObserve_StoreDown: Observe subscribes and reads the first state
// before it returns; a store that does not answer meanwhile fails it
// (bounded by the adapter's op timeout) with an error wrapping
// lock.ErrNoQuorum, rather than handing out a channel whose first state is
// not the state at the call.
func TestObserve_StoreDown(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	_, err := l.Leader(ctx, "down") // the eviction policy is checked: the next call is the script's
	require.ErrorIs(t, err, lock.ErrNoLeader)
	srv.Pause()
	defer srv.Resume()
	ch, err := l.Observe(ctx, "down")
	srv.Resume()
	require.ErrorIs(t, err, lock.ErrNoQuorum)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "the adapter's own timeout, not the caller's ctx")
	assert.Nil(t, ch)
	states := observe(t, l, "down")
	assert.False(t, nextState(t, states).Elected(), "answered again: the empty seat")
}

// TestElection_DeadCandidateHandOff: a candidate that died while queued
// (its heartbeat runs out in 5 s; it asked for a TTL of an hour) is
// elected by the hand-off, but its term expires when its heartbeat would
// have, as a dead mutex waiter is pruned: the seat empties by itself.
func TestElection_DeadCandidateHandOff(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	term, err := l.Campaign(ctx, "dead", "alive")
	require.NoError(t, err)
	states := observe(t, l, "dead")
	require.Equal(t, term.Token(), nextState(t, states).Token)

	raw := rawClient(t, srv.Addr())
	now, err := raw.Time(ctx).Result()
	require.NoError(t, err)
	nowMs := now.UnixMilli()
	const ghost = "ghostlocker/1"
	p := redis.DefaultPrefix
	_, err = raw.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
		pipe.Set(ctx, p+"qseq:dead", 1, 0)
		pipe.ZAdd(ctx, p+"queue:dead", goredis.Z{Score: 1, Member: ghost})
		pipe.ZAdd(ctx, p+"beats:dead", goredis.Z{Score: float64(nowMs + 5000), Member: ghost})
		pipe.HSet(ctx, p+"claims:dead", ghost, fmt.Sprintf("%d\nnode\nowner", nowMs),
			"e:"+ghost, fmt.Sprintf("%d\n%d\nghost", time.Hour.Milliseconds(), time.Hour.Milliseconds()))
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, term.Release(ctx))

	elected := nextState(t, states)
	require.Equal(t, "ghost", elected.Value, "the hand-off elects the queued candidate")
	pttl, err := raw.PTTL(ctx, p+"lease:dead").Result()
	require.NoError(t, err)
	assert.LessOrEqual(t, pttl, 5*time.Second, "the term lasts no longer than the candidate's heartbeat")
	assert.Positive(t, pttl)
	assert.False(t, nextState(t, states).Elected(), "the dead candidate's term expired: the empty seat")
}

// TestObserve_RevokedTerm: a revoke shortens a term's expiry to the grace
// and is announced, so that an observer's timer follows it: a revoked
// term whose holder is gone (it neither hears nor answers) is observed
// ending, as the empty seat, instead of shown until its old expiry.
func TestObserve_RevokedTerm(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	holder := newLocker(t, srv.Addr(), 2*time.Second)
	watcher := newLocker(t, srv.Addr(), time.Second) // its Revoke's grace: 1 s
	ctx := testCtx(t)
	term, err := holder.Campaign(ctx, "rv", "gone soon", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	require.NoError(t, redis.Deafen(holder))
	redis.StopRenewals(holder)
	states := observe(t, watcher, "rv")
	require.Equal(t, term.Token(), nextState(t, states).Token)
	require.NoError(t, watcher.Revoke(ctx, "rv", term.Token()))
	assert.Equal(t, lock.LeaderInfo{Election: "rv"}, nextState(t, states),
		"the revoked term expired: the empty seat, and nothing in between")
}

// TestElection_AdoptedTerm: Adopt of an election's term returns a
// lock.Term: Proclaim works on it, and its Release resigns, closing its
// Done before the store hands the seat on.
func TestElection_AdoptedTerm(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newLocker(t, srv.Addr(), 2*time.Second)
	b := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	first, err := a.Campaign(ctx, "ad", "a's", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	lease, err := b.Adopt(ctx, "ad", first.Token())
	require.NoError(t, err)
	adopted, ok := lease.(lock.Term)
	require.Truef(t, ok, "Adopt of a term returned a %T, not a lock.Term", lease)
	require.NoError(t, adopted.Proclaim(ctx, "b's"))
	info, err := b.Leader(ctx, "ad")
	require.NoError(t, err)
	assert.Equal(t, "b's", info.Value)
	assert.Equal(t, first.Token(), info.Token, "Adopt keeps the token")

	next := campaignAsync(ctx, a, "ad", "next")
	waitWaiters(t, b, "ad", 1)
	require.NoError(t, adopted.Release(ctx))
	t2 := wonTerm(t, next)
	assert.True(t, isClosed(adopted.Done()), "the adopted term's Done closed before the next term")
	require.ErrorIs(t, adopted.Err(), lock.ErrReleased)
	require.NoError(t, t2.Release(ctx))
}

// TestElection_GiveBackPrunesFirst: a giveback that frees the name with a
// dead candidate at the head of the queue (its heartbeat passed, not yet
// pruned) prunes it before the hand-off: the first term observed is the
// live candidate's.
func TestElection_GiveBackPrunesFirst(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	states := observe(t, l, "gb")
	require.False(t, nextState(t, states).Elected())

	raw := rawClient(t, srv.Addr())
	now, err := raw.Time(ctx).Result()
	require.NoError(t, err)
	nowMs := now.UnixMilli()
	const ghost = "ghostlocker/1"
	p := redis.DefaultPrefix
	_, err = raw.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
		pipe.Set(ctx, p+"qseq:gb", 1, 0)
		pipe.ZAdd(ctx, p+"queue:gb", goredis.Z{Score: 1, Member: ghost})
		pipe.ZAdd(ctx, p+"beats:gb", goredis.Z{Score: float64(nowMs - 1000), Member: ghost})
		pipe.HSet(ctx, p+"claims:gb", ghost, fmt.Sprintf("%d\nnode\nowner", nowMs-5000),
			"e:"+ghost, fmt.Sprintf("%d\n%d\nghost", time.Hour.Milliseconds(), time.Hour.Milliseconds()))
		return nil
	})
	require.NoError(t, err)
	redis.GiveBack(l, "gb", "nobody/1")
	n, err := raw.Exists(ctx, p+"queue:gb", p+"beats:gb", p+"qseq:gb", p+"claims:gb").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "the pruned queue's keys are tidied")
	term, err := l.Campaign(ctx, "gb", "live")
	require.NoError(t, err)
	s := nextState(t, states)
	assert.Equal(t, "live", s.Value, "the first term is the live candidate's, not the dead head's")
	assert.Equal(t, term.Token(), s.Token)
}
