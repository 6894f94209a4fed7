package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestNode_OpenCloseLeaksNothing opens and closes 1,000 durable single
// nodes and then 1,000 Lockers on one node, and checks that neither leaves
// goroutines or open file descriptors behind once things settle (issue 12
// item 7). A closed node must also have closed every file of its DataDir at
// once: the count alone would miss a file the node forgot to close, since
// the garbage collector closes it later (seen: without the bolt store's
// Close the counts stayed flat). The nodes start a few at a time: a single node takes about one
// election timeout to lead, so one after the other they took minutes under
// the race detector. -short runs a tenth of each.
func TestNode_OpenCloseLeaksNothing(t *testing.T) {
	nodes, lockers := 1000, 1000
	if testing.Short() {
		nodes, lockers = 100, 100
	}
	root := t.TempDir()
	openCloseNode := func(i int) error {
		dir := filepath.Join(root, strconv.Itoa(i))
		n, err := New(Config{DataDir: dir})
		if err != nil {
			return err
		}
		_, acqErr := n.Acquire(context.Background(), "x")
		closeErr := n.Close()
		return errors.Join(acqErr, closeErr, noFileOpenUnder(dir), os.RemoveAll(dir))
	}

	t.Run("nodes", func(t *testing.T) {
		require.NoError(t, openCloseNode(-1), "warm-up")
		base := countResources()
		start := time.Now()
		require.NoError(t, inParallel(nodes, 8, openCloseNode))
		t.Logf("%d nodes opened and closed in %v", nodes, time.Since(start))
		requireNoGrowth(t, base)
	})

	t.Run("lockers", func(t *testing.T) {
		n := newNode(t, Config{DataDir: t.TempDir()})
		openCloseLocker := func(int) error {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			l, err := n.NewLocker(ctx)
			if err != nil {
				return err
			}
			_, acqErr := l.Acquire(ctx, "x")
			return errors.Join(acqErr, l.Close())
		}
		require.NoError(t, openCloseLocker(-1), "warm-up")
		base := countResources()
		start := time.Now()
		require.NoError(t, inParallel(lockers, 1, openCloseLocker))
		t.Logf("%d Lockers opened and closed in %v", lockers, time.Since(start))
		requireNoGrowth(t, base)
	})
}

// inParallel runs fn(0) … fn(count-1) on workers goroutines and returns
// the errors it returned.
func inParallel(count, workers int, fn func(i int) error) error {
	next := make(chan int)
	errs := make(chan error, count)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					errs <- fmt.Errorf("#%d: %w", i, err)
				}
			}
		})
	}
	for i := range count {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// resources are what a leak would make grow.
type resources struct {
	goroutines int
	fds        int // -1 where /proc/self/fd does not exist
}

func countResources() resources {
	fds := -1
	if entries, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(entries)
	}
	return resources{goroutines: runtime.NumGoroutine(), fds: fds}
}

// noFileOpenUnder reports a file under dir that this process has open
// (Linux only: elsewhere it reports nothing).
func noFileOpenUnder(dir string) error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			return fmt.Errorf("%s still open after Close", target)
		}
	}
	return nil
}

// requireNoGrowth waits up to 30 s for the goroutines and file descriptors
// to come back to base (stopped goroutines need a moment to exit).
func requireNoGrowth(t *testing.T, base resources) {
	t.Helper()
	if base.fds < 0 {
		t.Log("no /proc/self/fd here: file descriptors not counted")
	}
	var now resources
	deadline := time.Now().Add(30 * time.Second)
	for {
		now = countResources()
		if now.goroutines <= base.goroutines && now.fds <= base.fds {
			t.Logf("goroutines %d (before %d), fds %d (before %d)", now.goroutines, base.goroutines, now.fds, base.fds)
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // poll: bounded by the deadline
	}
	dumpGoroutines(t)
	t.Fatalf("resources grew: goroutines %d (before %d), fds %d (before %d)", now.goroutines, base.goroutines, now.fds, base.fds)
}
