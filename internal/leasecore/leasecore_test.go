package leasecore

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCore_EndsOnceWithFirstCause(t *testing.T) {
	c, e := New("a", 7)
	assert.Equal(t, "a", c.Name())
	assert.Equal(t, uint64(7), c.Token())
	assert.NoError(t, c.Err())
	assert.False(t, c.Ended())
	select {
	case <-c.Done():
		t.Fatal("Done closed before End")
	default:
	}

	assert.True(t, e.End(lock.ErrExpired))
	assert.False(t, e.End(lock.ErrReleased), "a second End must not count")
	<-c.Done()
	assert.True(t, c.Ended())
	require.ErrorIs(t, c.Err(), lock.ErrExpired)
	assert.NotErrorIs(t, c.Err(), lock.ErrReleased)
	require.ErrorIs(t, context.Cause(c.Context()), lock.ErrExpired)
	assert.ErrorIs(t, c.Context().Err(), context.Canceled)
}

func TestEnder_RacingEndsCountOnce(t *testing.T) {
	for range 2000 {
		_, e := New("a", 1)
		var wins atomic.Int32
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				<-start
				if e.End(lock.ErrLost) {
					wins.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, int32(1), wins.Load(), "End reported true to more than one racing caller")
	}
}

func TestCore_EmbedderCannotBeEndedFromOutside(t *testing.T) {
	type lease struct{ Core }
	c, _ := New("a", 1)
	var l any = &lease{Core: c}
	_, endable := l.(interface{ End(error) bool })
	assert.False(t, endable, "a lease that embeds Core must not have an End method")
	_, resettable := l.(interface{ Init(string, uint64) })
	assert.False(t, resettable, "a lease that embeds Core must not have an Init method")
}

func TestCore_NotHeldWrapsCause(t *testing.T) {
	c, e := New("job", 1)
	e.End(lock.ErrLost)
	for _, prefix := range []string{"", "redis lock"} {
		err := c.NotHeld(prefix)
		require.ErrorIs(t, err, lock.ErrNotHeld)
		require.ErrorIs(t, err, lock.ErrLost)
		assert.Contains(t, err.Error(), `"job"`)
		assert.Contains(t, err.Error(), prefix)
	}
}

func TestDeadline_FiresOnceWhenPassed(t *testing.T) {
	var d Deadline
	fired := make(chan struct{}, 2)
	d.Start(time.Now().Add(10*time.Millisecond), func() { fired <- struct{}{} })
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("deadline never fired")
	}
	assert.False(t, d.Extend(time.Now().Add(time.Hour)), "a passed deadline cannot be extended")
	d.Stop()
	assert.Empty(t, fired, "fired twice")
}

func TestDeadline_ExtendMovesLaterOnly(t *testing.T) {
	var d Deadline
	fired := make(chan struct{}, 1)
	start := time.Now().Add(time.Hour)
	d.Start(start, func() { fired <- struct{}{} })
	defer d.Stop()
	require.True(t, d.Extend(start.Add(-time.Minute)))
	assert.Equal(t, start, d.At(), "an earlier time must not move the deadline")
	require.True(t, d.Extend(start.Add(time.Minute)))
	assert.Equal(t, start.Add(time.Minute), d.At())
}

func TestDeadline_ExtendedBeforeFiringRearms(t *testing.T) {
	var d Deadline
	fired := make(chan time.Time, 1)
	d.Start(time.Now().Add(20*time.Millisecond), func() { fired <- time.Now() })
	later := time.Now().Add(200 * time.Millisecond)
	require.True(t, d.Extend(later))
	select {
	case at := <-fired:
		assert.False(t, at.Before(later), "fired at %v, before the extended deadline %v", at, later)
	case <-time.After(10 * time.Second):
		t.Fatal("extended deadline never fired")
	}
}

func TestDeadline_StopPreventsFire(t *testing.T) {
	var d Deadline
	fired := make(chan struct{}, 1)
	d.Start(time.Now().Add(time.Millisecond), func() { fired <- struct{}{} })
	d.Stop()
	assert.False(t, d.Extend(time.Now().Add(time.Hour)), "a stopped deadline cannot be extended")
	// Whether or not the timer had begun, a stopped deadline's due() is false.
	assert.False(t, d.due())
}

func TestDeadline_NeverStartedIsInert(t *testing.T) {
	var d Deadline
	assert.False(t, d.Extend(time.Now().Add(time.Hour)))
	assert.True(t, d.At().IsZero())
	d.Stop()
}

func TestBackoff_DoublesUpToMaxWithJitter(t *testing.T) {
	b := Backoff{Min: 40 * time.Millisecond, Max: 100 * time.Millisecond}
	bounds := []time.Duration{40, 80, 100, 100}
	for i, want := range bounds {
		want *= time.Millisecond
		got := b.Next()
		assert.GreaterOrEqual(t, got, want*3/4, "pause %d", i)
		assert.LessOrEqual(t, got, want*5/4, "pause %d", i)
	}
	b.Reset()
	assert.LessOrEqual(t, b.Next(), 50*time.Millisecond, "Reset must start from Min")
}

func TestSleep_EndsWithCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Sleep(ctx, time.Hour)
	require.ErrorIs(t, err, context.Canceled)
	b := Backoff{Min: time.Hour, Max: time.Hour}
	require.ErrorIs(t, b.Wait(ctx), context.Canceled)
	require.NoError(t, Sleep(context.Background(), time.Millisecond))
}

func TestKick_NeverBlocksAndMerges(t *testing.T) {
	ch := make(chan struct{}, 1)
	Kick(ch)
	Kick(ch) // must not block
	<-ch
	select {
	case <-ch:
		t.Fatal("two kicks were not merged")
	default:
	}
}

// recordSink keeps what a measured lease reports.
type recordSink struct {
	metrics.Nop
	mu      sync.Mutex
	holding int
	ended   []metrics.Reason
	kinds   []lock.Kind
	held    []time.Duration
}

func (s *recordSink) Holding(d int) { s.mu.Lock(); s.holding += d; s.mu.Unlock() }
func (s *recordSink) Ended(k lock.Kind, r metrics.Reason, held time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended, s.kinds, s.held = append(s.ended, r), append(s.kinds, k), append(s.held, held)
}

// TestCore_Measured: a measured lease counts as held from New to its one
// end, which is reported once with its reason, kind and time held, however
// many End calls race.
func TestCore_Measured(t *testing.T) {
	sink := &recordSink{}
	_, e1 := NewMeasured("a", 1, lock.KindTTL, sink)
	_, e2 := NewMeasured("b", 2, lock.KindSession, sink)
	assert.Equal(t, 2, sink.holding)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { e1.End(lock.ErrRevoked) })
	}
	wg.Wait()
	assert.Equal(t, 1, sink.holding)
	e2.End(lock.ErrReleased)
	assert.Equal(t, 0, sink.holding)
	assert.Equal(t, []metrics.Reason{metrics.ReasonRevoked, metrics.ReasonReleased}, sink.ended)
	assert.Equal(t, []lock.Kind{lock.KindTTL, lock.KindSession}, sink.kinds)
	for _, h := range sink.held {
		assert.GreaterOrEqual(t, h, time.Duration(0))
	}
	_, e3 := New("c", 3) // not measured: nothing to report to
	assert.True(t, e3.End(lock.ErrReleased))
}
