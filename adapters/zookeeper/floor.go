package zookeeper

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
)

// MaxFloorCatchUp is the most writes one FloorToken makes to move the
// store's zxid up to a floor it is short of; it makes none for a floor
// more than floorCatchUpGap above the zxid (no number of calls would get
// there).
const (
	MaxFloorCatchUp = 256
	floorCatchUpGap = 1 << 16
)

// FloorToken implements lock.TokenFloorer as far as ZooKeeper can
// (DESIGN.md, "Raising tokens: FloorToken"): tokens are czxids, which a
// client can move up only by writing. It makes one write (the barrier's
// SetData of the root), and as many more as the zxid is short of floor, at
// most MaxFloorCatchUp, if it is not hopelessly short (a later call goes
// on from there). If the zxid is still below floor, or a
// claim of name queued before the last write has a czxid at or below
// floor (it would be granted with that token), the error wraps
// lock.ErrUnsupported and names both numbers. Errors of an unreachable
// store and of ctx follow R5.
func (l *Locker) FloorToken(ctx context.Context, name string, floor uint64) error {
	if err := lock.ValidateName(name); err != nil {
		return err
	}
	what := fmt.Sprintf("floor token %q", name)
	if err := lock.ValidateTokenFloor(floor); err != nil {
		return fmt.Errorf("zookeeper: %s: %w", what, err)
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return fmt.Errorf("zookeeper: %s: %w", what, err)
	}
	defer end()
	var zxid, queued int64
	err = retry(opCtx, func() error {
		// The barrier's write, then up to MaxFloorCatchUp more while the
		// zxid is short of floor, but not hopelessly.
		for writes := 0; ; writes++ {
			stat, err := l.touchRoot(opCtx)
			if err != nil {
				return err
			}
			zxid = stat.Mzxid
			if zxid >= int64(floor) || writes == MaxFloorCatchUp || hopeless(floor, zxid) {
				break
			}
		}
		// After the last write: a claim created during the catch-up has
		// a czxid below it, maybe at or below floor.
		var err error
		queued, err = l.firstWaiter(opCtx, name)
		return err
	})
	if err != nil {
		return l.fail(ctx, opCtx, what, err)
	}
	switch {
	case zxid < 0 || uint64(zxid) < floor:
		return fmt.Errorf("zookeeper: %s: %w: the store's zxid is %d, below the floor %d (tokens are zxids, which a client moves up only by writing)",
			what, floorErr(floor, zxid), zxid, floor)
	case queued > 0 && uint64(queued) <= floor:
		return fmt.Errorf("zookeeper: %s: %w: a claim queued at zxid %d would be granted with that token, not above the floor %d",
			what, lock.ErrTokensBehind, queued, floor)
	}
	return nil
}

// firstWaiter returns the czxid of the first waiter of name (the lowest
// claim but one; if it went meanwhile, the next one that is still there),
// the smallest token a claim queued now can be granted with; 0 if nobody
// waits.
func (l *Locker) firstWaiter(ctx context.Context, name string) (int64, error) {
	dir := l.dir(name)
	kids, err := l.children(ctx, dir)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return 0, nil
	case err != nil:
		return 0, err
	}
	for i := 1; i < len(kids); i++ {
		ok, stat, err := l.exists(ctx, dir+"/"+kids[i].name)
		switch {
		case err != nil:
			return 0, err
		case ok:
			return stat.Czxid, nil
		}
	}
	return 0, nil
}

// floorErr is ErrTokensBehind for a zxid that later calls can write up to
// floor, ErrUnsupported for one hopelessly short of it.
func floorErr(floor uint64, zxid int64) error {
	if hopeless(floor, zxid) {
		return lock.ErrUnsupported
	}
	return lock.ErrTokensBehind
}

// hopeless reports whether zxid is too far short of floor for writes to
// close the gap (floorCatchUpGap).
func hopeless(floor uint64, zxid int64) bool {
	return int64(floor)-zxid > floorCatchUpGap
}
