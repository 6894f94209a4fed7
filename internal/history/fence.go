package history

import (
	"context"
	"fmt"
	"runtime"
	"sync"
)

// FenceConfig configures a Fence. The zero value is ready to use.
type FenceConfig struct {
	// Section is the body of every write: it runs after the fence has
	// admitted the write and before the fence commits it, like the work a
	// holder does inside its critical section. An error aborts the write
	// (recorded as Failed, nothing committed). nil: runtime.Gosched, which
	// only widens the window between admission and commit.
	Section func(ctx context.Context, client int, name string, token uint64) error
}

// Fence is a resource protected by fencing tokens (Kleppmann's "How to do
// distributed locking"): per name it remembers the greatest token it has
// admitted and refuses writes with a smaller one. Equal tokens are admitted
// (the same holder writing again).
//
// A write has a start and an end. At the start the fence admits the write
// if its token is at least the greatest admitted so far, and raises that
// mark to it; then Section runs; at the end the fence commits the write
// only if no greater token was admitted in the meantime. So two committed
// (OK) writes of different tokens never overlap in time, and committed
// tokens never decrease in admission order: the properties Check verifies
// on every recorded write.
//
// Every write is recorded in the Recorder as a Write operation whose Call is
// the admission (taken under the fence's lock, so the order of Calls is the
// order of admission) and whose Return is the commit or refusal.
type Fence struct {
	rec     *Recorder
	section func(ctx context.Context, client int, name string, token uint64) error

	mu  sync.Mutex
	max map[string]uint64 // greatest admitted token per name
}

// NewFence returns a Fence that records its writes in rec.
func NewFence(rec *Recorder, cfg FenceConfig) *Fence {
	section := cfg.Section
	if section == nil {
		section = func(context.Context, int, string, uint64) error {
			runtime.Gosched()
			return nil
		}
	}
	return &Fence{rec: rec, section: section, max: make(map[string]uint64)}
}

// Write performs one fenced write of name by client with token. It returns
// nil if the write was committed, an error wrapping ErrStaleToken if the
// fence refused it, ctx.Err() without recording anything if ctx had already
// ended, or the error of Section.
func (f *Fence) Write(ctx context.Context, client int, name string, token uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	inv := f.rec.Invoke(client, Write, name, token)
	if m := f.max[name]; token < m {
		err := fmt.Errorf("%w: %q: token %d < %d", ErrStaleToken, name, token, m)
		inv.Return(0, err)
		f.mu.Unlock()
		return err
	}
	f.max[name] = token
	f.mu.Unlock()

	sectionErr := f.section(ctx, client, name, token)

	f.mu.Lock()
	defer f.mu.Unlock()
	if sectionErr != nil {
		inv.Return(0, sectionErr)
		return sectionErr
	}
	if m := f.max[name]; m != token {
		err := fmt.Errorf("%w: %q: token %d superseded by %d during the write", ErrStaleToken, name, token, m)
		inv.Return(0, err)
		return err
	}
	inv.Return(0, nil)
	return nil
}

// Token returns the greatest token the fence has admitted for name.
func (f *Fence) Token(name string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.max[name]
}
