package locktest

import (
	"context"
	"fmt"
	"sync"
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
