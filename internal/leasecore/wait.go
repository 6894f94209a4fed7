package leasecore

import (
	"context"
	"math/rand/v2"
	"time"
)

// Kick wakes whoever waits on ch (a channel with a buffer of one) without
// blocking: a kick while one is already pending is merged into it.
func Kick(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Backoff is the pause between retries: it starts at Min, doubles after
// every wait up to Max, and each pause is jittered by ±25 % so that
// clients that failed together do not retry together. The zero Backoff is
// not usable; set Min and Max (0 < Min ≤ Max).
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// Next returns the next pause and advances the backoff.
func (b *Backoff) Next() time.Duration {
	d := max(b.next, b.Min)
	b.next = min(2*d, b.Max)
	return Jitter(d)
}

// Reset makes the next pause Min again (after a success).
func (b *Backoff) Reset() { b.next = 0 }

// Wait sleeps for the next pause or until ctx ends, and returns ctx.Err()
// in that case.
func (b *Backoff) Wait(ctx context.Context) error {
	return Sleep(ctx, b.Next())
}

// Jitter returns d ± 25 %.
func Jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}

// Sleep waits for d or until ctx ends; it returns ctx.Err() in that case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
