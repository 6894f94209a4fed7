package redis

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// Elections (DESIGN.md, "Elections"): a term is the mutex's lease of the
// election's name, with the type election and a value beside it.

// Campaign implements lock.Elector: Acquire's queue with the ballot of an
// election; the returned Term is the lease.
func (c *instance) Campaign(ctx context.Context, election, value string, opts ...lock.Option) (lock.Term, error) {
	if err := lock.ValidateValue(value); err != nil {
		return nil, fmt.Errorf("redis lock: campaign %q: %w", election, err)
	}
	l, err := c.acquire(ctx, "campaign", election, opts, ballot{typ: typeElection, value: value}, c.queue)
	if err != nil {
		return nil, err
	}
	return &term{lease: l.(*lease)}, nil
}

// term is a lock.Term: the lease of an election's name.
type term struct {
	*lease
}

var _ lock.Term = (*term)(nil)

// Release implements lock.Term: it resigns. The term ends here first
// (Done closes with lock.ErrReleased), and only then does the release
// script delete it in the store by token, so that the Done of the old
// leader is closed before the store can elect the next. If the store does
// not answer, the renewer deletes it later (a stale lease) and the error
// wraps lock.ErrNoQuorum.
func (t *term) Release(ctx context.Context) error {
	if err := t.c.openLease(&t.Core); err != nil {
		return err
	}
	return t.resign(ctx)
}

// resign is Release once the call is registered (openLease). A term that
// ended meanwhile (its local deadline, a revoke or an adoption, between
// openLease and here) is not resigned: the error wraps lock.ErrNotHeld and
// its end cause, as a lease's Release after its end.
func (t *term) resign(ctx context.Context) error {
	c := t.c
	defer c.leave()
	if err := ctx.Err(); err != nil { // nothing done, as a lease's Release
		return fmt.Errorf("redis lock: resign %q: %w", t.Name(), err)
	}
	c.mu.Lock()
	if t.Ended() {
		c.mu.Unlock()
		return t.NotHeld("")
	}
	t.end(fmt.Errorf("%w: %q resigned", lock.ErrReleased, t.Name()))
	c.mu.Unlock()
	callCtx, cancel := context.WithTimeout(ctx, c.opTimeout)
	defer cancel()
	defer context.AfterFunc(c.haltCtx, cancel)()
	v, err := c.run(callCtx, releaseScript, t.Name(), t.Token(), t.claim)
	if err != nil {
		c.mu.Lock()
		c.stale = append(c.stale, t.staleEntry())
		c.mu.Unlock()
		return c.cutErr(ctx, "resign", t.Name(), err)
	}
	out := make(chan error, 1)
	t.settleRelease(v, nil, out) // the term has ended: only the outcome
	return <-out
}

// Proclaim implements lock.Term: proclaimScript, checked on the token and
// claim; it returns once the store answered, ctx ended or the term ended,
// as Refresh.
func (t *term) Proclaim(ctx context.Context, value string) error {
	if err := lock.ValidateValue(value); err != nil {
		return fmt.Errorf("redis lock: proclaim %q: %w", t.Name(), err)
	}
	if err := t.c.openLease(&t.Core); err != nil {
		return err
	}
	defer t.c.leave()
	return t.leaseCall(ctx, "proclaim", proclaimScript, []any{t.Token(), t.claim, value},
		func(v []any, err error, out chan<- error) {
			switch {
			case err != nil:
				out <- err
			case v[0] == "ok":
				out <- nil
			default: // refused as a renewal would be: gone, adopted, revoked
				out <- t.settleRenewal(v, time.Time{})
			}
		})
}

// Leader implements lock.Elector: one leaderScript, linearizable as
// Inspect.
func (c *instance) Leader(ctx context.Context, election string) (lock.LeaderInfo, error) {
	if err := c.openInspect(election); err != nil {
		return lock.LeaderInfo{}, err
	}
	defer c.leave()
	if err := ctx.Err(); err != nil { // nothing sent
		return lock.LeaderInfo{}, fmt.Errorf("redis lock: leader %q: %w", election, err)
	}
	s, live, err := c.readSeat(ctx, election, "")
	switch {
	case err != nil:
		return lock.LeaderInfo{}, c.cutErr(ctx, "leader", election, err)
	case live != "" && live != typeElection:
		return lock.LeaderInfo{}, fmt.Errorf("redis lock: leader %q: %w", election, typeErr(live, typeElection))
	case !s.Elected():
		return lock.LeaderInfo{}, fmt.Errorf("redis lock: leader %q: %w", election, lock.ErrNoLeader)
	}
	return s.LeaderInfo, nil
}

// readSeat runs leaderScript: the election's state and the type the name
// lives as ("" if free); the script publishes the state on an observer's
// marker channel ("": none).
func (c *instance) readSeat(ctx context.Context, election, marker string) (seat, string, error) {
	v, err := c.run(ctx, leaderScript, election, marker)
	if err != nil {
		return seat{}, "", err
	}
	if len(v) < 3 {
		return seat{}, "", fmt.Errorf("%w: leader answered %v", ErrUnexpectedReply, v)
	}
	state, ok1 := v[1].(string)
	live, ok2 := v[2].(string)
	if !ok1 || !ok2 {
		return seat{}, "", fmt.Errorf("%w: leader answered %v", ErrUnexpectedReply, v)
	}
	s, err := parseSeat(election, state)
	return s, live, err
}

// seat is an election's state as leaderScript answers it and the
// scripts publish it (prelude.lua's seat): a term, or the empty seat.
type seat struct {
	lock.LeaderInfo
	ver     uint64        // a term: its changes (Proclaim, Adopt)
	counter uint64        // the empty seat: the name's token counter
	pttl    time.Duration // a term: its time left in the store
}

// parseSeat reads a seat of election: "0\n<counter>" (empty), or
// "token\nver\nclaim\nage ms\npttl ms\nvalue".
func parseSeat(election, s string) (seat, error) {
	bad := fmt.Errorf("%w: election state %q", ErrUnexpectedReply, s)
	f := strings.SplitN(s, "\n", 6)
	if len(f) == 2 && f[0] == "0" {
		counter, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return seat{}, bad
		}
		return seat{LeaderInfo: lock.LeaderInfo{Election: election}, counter: counter}, nil
	}
	if len(f) != 6 {
		return seat{}, bad
	}
	token, err1 := strconv.ParseUint(f[0], 10, 64)
	ver, err2 := strconv.ParseUint(f[1], 10, 64)
	age, err3 := strconv.ParseInt(f[3], 10, 64)
	pttl, err4 := strconv.ParseInt(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || token == 0 {
		return seat{}, bad
	}
	return seat{
		LeaderInfo: lock.LeaderInfo{Election: election, Token: token, Value: f[5], Holder: holderID(f[2]),
			Since: time.Duration(age) * time.Millisecond},
		ver:  ver,
		pttl: time.Duration(pttl) * time.Millisecond,
	}, nil
}

// order is s's place in the store's order of the election's states: a
// term by (token, ver), the empty seat after the term whose token is the
// counter and before the next.
func (s seat) order() (uint64, uint64) {
	if !s.Elected() {
		return s.counter, math.MaxUint64
	}
	return s.Token, s.ver
}

// after reports whether s comes after t in the store's order.
func (s seat) after(t seat) bool {
	s1, s2 := s.order()
	t1, t2 := t.order()
	return s1 > t1 || (s1 == t1 && s2 > t2)
}

// same reports whether s and t show the same state to a reader.
func (s seat) same(t seat) bool {
	return s.Token == t.Token && s.Value == t.Value && s.Holder == t.Holder
}
