package locktest

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stretchr/testify/assert"
)

// inRounds runs workers goroutines; worker w calls round(ctx, w, r) for
// each r below rounds and stops at the first error, which it reports. It
// returns once every worker has, having asserted that none reported one.
// ctx is one deadline for every round of every worker, generous for slow
// stores (endBound).
func (e *env) inRounds(workers, rounds int, round func(ctx context.Context, w, r int) error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), e.endBound())
	defer cancel()
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				if err := round(ctx, w, r); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(e.t, err)
	}
}

// maxViolations is how many messages of one kind a concurrent subtest
// keeps: enough to see the pattern, few enough to read.
const maxViolations = 10

// note appends a message to list unless it holds maxViolations already.
// The caller guards list.
func note(list *[]string, format string, args ...any) {
	if len(*list) < maxViolations {
		*list = append(*list, fmt.Sprintf(format, args...))
	}
}

// noter returns a note that takes mu around each message.
func noter(mu *sync.Mutex) func(list *[]string, format string, args ...any) {
	return func(list *[]string, format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		note(list, format, args...)
	}
}

// receive waits for the next outcome on ch of a call made in a goroutine
// (call names it, with its article: "an Acquire"). The calls are bounded
// by the wait timeout, so each reports through its outcome if it did not
// succeed in time; receive waits longer (endBound), so that a failure
// reads the same however the machine's load orders the two timers.
func receive[T any](e *env, ch <-chan T, what, call string) T {
	e.t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(e.endBound()):
		e.t.Fatalf("timed out after %v waiting for %s (%s that ignored its ctx?)", e.endBound(), what, call)
	}
	panic("unreachable")
}

// turns checks holders that take turns at one name, as inRounds' rounds
// do: one inside at a time (I1), each with a token above every earlier
// one's (I2). Its phrases name the holders in its messages.
type turns struct {
	role  string // who holds: "worker"
	crowd string // more than one inside: "holders inside the critical section"
	token string // the token's name: "token"

	inside     atomic.Int32
	mu         sync.Mutex // guards the fields below; taken inside the critical section
	last       uint64
	grants     int
	violations []string
}

// enter records that round r of worker w came in with token tok.
func (t *turns) enter(w, r int, tok uint64) {
	if n := t.inside.Add(1); n != 1 {
		t.violation("%s %d round %d: %d %s (I1)", t.role, w, r, n, t.crowd)
	}
	t.mu.Lock()
	prev := t.last
	t.last = max(t.last, tok)
	t.grants++
	t.mu.Unlock()
	if tok <= prev {
		t.violation("%s %d round %d: %s %d after token %d (I2)", t.role, w, r, t.token, tok, prev)
	}
}

// leave gives an overlapping holder a chance to show up, checks that none
// did, and records that round r of worker w left.
func (t *turns) leave(w, r int) {
	runtime.Gosched()
	if n := t.inside.Load(); n != 1 {
		t.violation("%s %d round %d: %d %s (I1)", t.role, w, r, n, t.crowd)
	}
	t.inside.Add(-1)
}

func (t *turns) violation(format string, args ...any) {
	noter(&t.mu)(&t.violations, format, args...)
}
