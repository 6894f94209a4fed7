package redis

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/quorumlock/quorumlock/lock"
)

// maxFloor bounds FloorToken's floor on this adapter: tokens pass through
// Lua's numbers (doubles), exact up to 2^53, and 2^52 leaves 2^52 grants
// above the largest floor (DESIGN.md, "Raising tokens: FloorToken").
const maxFloor = 1 << 52

// opFloor names FloorToken in errors.
const opFloor = "floor-token"

// checkFloor validates FloorToken's arguments, before any I/O.
func checkFloor(name string, floor uint64) error {
	if err := lock.ValidateName(name); err != nil {
		return err
	}
	if err := lock.ValidateTokenFloor(floor); err != nil {
		return fmt.Errorf("redis lock: %s %q: %w", opFloor, name, err)
	}
	if floor > maxFloor {
		return fmt.Errorf("redis lock: %s %q: %w: floor %d is above %d, the largest this adapter can raise tokens to (Lua numbers are doubles)",
			opFloor, name, lock.ErrUnsupported, floor, uint64(maxFloor))
	}
	return nil
}

// openFloor is the common start of FloorToken in both modes: the
// arguments checked before any I/O, the call registered, and ctx's error
// alone if it had ended (nothing is sent). On success the caller calls
// g.leave when the call ends.
func (g *gate) openFloor(ctx context.Context, name string, floor uint64) error {
	if err := checkFloor(name, floor); err != nil {
		return err
	}
	if err := g.enter(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		g.leave()
		return fmt.Errorf("redis lock: %s %q: %w", opFloor, name, err)
	}
	return nil
}

// FloorToken implements lock.TokenFloorer on one primary: the floor
// script raises the name's fence counter to floor if it is below.
func (c *instance) FloorToken(ctx context.Context, name string, floor uint64) error {
	if err := c.openFloor(ctx, name, floor); err != nil {
		return err
	}
	defer c.leave()
	return c.floor(ctx, name, floor)
}

// floor runs the floor script; its error follows R5 (cutErr).
func (c *instance) floor(ctx context.Context, name string, floor uint64) error {
	v, err := c.run(ctx, floorScript, name, floor)
	if err != nil {
		return c.cutErr(ctx, opFloor, name, err)
	}
	if v[0] != "ok" {
		return fmt.Errorf("redis lock: %s %q: %w: floor answered %v", opFloor, name, ErrUnexpectedReply, v)
	}
	return nil
}

// FloorToken implements lock.TokenFloorer in Redlock mode: the floor
// script runs on every primary, and the floor holds once a majority took
// it, since every later grant's majority shares a primary with that one
// and its token is the largest of its majority's (DESIGN.md).
func (r *redlock) FloorToken(ctx context.Context, name string, floor uint64) error {
	if err := r.openFloor(ctx, name, floor); err != nil {
		return err
	}
	defer r.leave()
	errs := make([]error, len(r.subs))
	var acks atomic.Int32
	r.each(func(i int, c *instance) {
		callCtx, cancel := subCtx(ctx, c.cfg.SessionTTL)
		defer cancel()
		if errs[i] = c.floor(callCtx, name, floor); errs[i] == nil {
			acks.Add(1)
		}
	})
	ok := int(acks.Load())
	if ok >= r.quorum {
		return nil
	}
	if r.reachable(ctx, ok, errs) {
		return fmt.Errorf("redis lock: %s %q: %w", opFloor, name, ctx.Err())
	}
	return ctxErr(ctx, opFloor, name, fmt.Errorf("%w: %d of %d primaries took the floor: %w",
		lock.ErrNoQuorum, ok, len(r.subs), causes(ctx, errs...)))
}
