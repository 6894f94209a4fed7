package locktest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// plainLocker hides every optional interface of the Locker it wraps.
type plainLocker struct{ lock.Locker }

// unsupported is a Locker whose new primitives all answer ErrUnsupported,
// counting the calls.
type unsupported struct {
	lock.Locker
	calls *atomic.Int32
}

func (u unsupported) err() error {
	u.calls.Add(1)
	return fmt.Errorf("%w: not in this mode", lock.ErrUnsupported)
}

func (u unsupported) Campaign(context.Context, string, string, ...lock.Option) (lock.Term, error) {
	return nil, u.err()
}

func (u unsupported) Leader(context.Context, string) (lock.LeaderInfo, error) {
	return lock.LeaderInfo{}, u.err()
}

func (u unsupported) Observe(context.Context, string) (<-chan lock.LeaderInfo, error) {
	return nil, u.err()
}

func (u unsupported) AcquirePermit(context.Context, string, int, ...lock.Option) (lock.Permit, error) {
	return nil, u.err()
}

func (u unsupported) TryAcquirePermit(context.Context, string, int, ...lock.Option) (lock.Permit, error) {
	return nil, u.err()
}

func (u unsupported) AcquireRead(context.Context, string, ...lock.Option) (lock.Lease, error) {
	return nil, u.err()
}

func (u unsupported) TryAcquireRead(context.Context, string, ...lock.Option) (lock.Lease, error) {
	return nil, u.err()
}

func (u unsupported) AcquireWrite(context.Context, string, ...lock.Option) (lock.Lease, error) {
	return nil, u.err()
}

func (u unsupported) TryAcquireWrite(context.Context, string, ...lock.Option) (lock.Lease, error) {
	return nil, u.err()
}

// TestRun_groups: the group of an optional interface is skipped for a
// Locker that does not implement it, and for one whose first call answers
// ErrUnsupported, after that one call; it runs for one that implements it.
func TestRun_groups(t *testing.T) {
	s := newRefStore("")
	var calls atomic.Int32
	for _, c := range []struct {
		what      string
		newLocker func(t *testing.T) lock.Locker
		skipped   bool
		calls     int32
	}{
		{"plain", func(t *testing.T) lock.Locker { return plainLocker{s.newLocker(t)} }, true, 0},
		{"unsupported", func(t *testing.T) lock.Locker { return unsupported{s.newLocker(t), &calls} }, true, 1},
		{"reference", s.newLocker, false, 0},
	} {
		t.Run(c.what, func(t *testing.T) {
			calls.Store(0)
			su := &suite{cfg: config{prefix: randomPrefix(), wait: 10 * time.Second}, newLocker: c.newLocker}
			for _, g := range []struct {
				name, iface string
				probe       func(*env) (bool, error)
			}{
				{"Election", "lock.Elector", probeElector},
				{"Semaphore", "lock.Semaphores", probeSemaphores},
				{"ReadWrite", "lock.RWLockers", probeRWLockers},
			} {
				ran := false
				skipped := su.group(t, g.name, g.iface, g.probe, []subtest{{"Ran", func(*env) { ran = true }}})
				assert.Equal(t, c.skipped, skipped, "%s group skipped", g.name)
				assert.Equal(t, !c.skipped, ran, "%s group's subtests ran", g.name)
				require.Equal(t, c.calls, calls.Swap(0), "%s: calls of the unsupported interface", g.name)
			}
		})
	}
}
