package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/quorumlock/quorumlock/lock"
)

// idleParallel is how many Acquires of idle locks are in flight at once.
const idleParallel = 32

// scaleProbe holds cfg.idle idle locks on one Locker of b, then runs W2
// beside them; the idle locks are released (the Locker closed) after.
func scaleProbe(ctx context.Context, b backend, backendName string, cfg config, prog *progress) (cell, error) {
	holder, err := b.newLocker(ctx, 0)
	if err != nil {
		return cell{}, fmt.Errorf("%s scale: holder's Locker: %w", backendName, err)
	}
	defer func() { _ = holder.Close() }()
	if err := holdIdle(ctx, holder, cfg.idle, prog, backendName); err != nil {
		return cell{}, fmt.Errorf("%s scale: holding %d idle locks: %w", backendName, cfg.idle, err)
	}
	w := workloads["W2"]
	w.name = fmt.Sprintf("W2+idle%d", cfg.idle)
	c, err := runCell(ctx, b, backendName, w, cfg, prog)
	c.Idle = cfg.idle
	return c, err
}

// holdIdle acquires n distinct names on l, idleParallel at a time, and
// keeps them held.
func holdIdle(ctx context.Context, l lock.Locker, n int, prog *progress, backendName string) error {
	stop := prog.count(backendName+" holding idle locks", n)
	defer stop()
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range min(idleParallel, n) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				if _, err := l.Acquire(ctx, fmt.Sprintf("lockbench/idle/%d", i)); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				prog.add(1)
			}
		})
	}
	wg.Wait()
	return firstErr
}
