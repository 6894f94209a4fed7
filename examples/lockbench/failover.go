package main

import (
	"context"
	"fmt"
	"time"
)

// failoverTimeout bounds one probe: the time from the kill to the grant.
const failoverTimeout = 30 * time.Second

// failoverProbe measures, cfg.failovers times on a fresh durable 3-node
// cluster each, the time from the leader's kill (Abort, as a crashed
// process) to the first Acquire granted through a survivor, with a Locker
// opened on the survivor before the kill.
func failoverProbe(ctx context.Context, cfg config, prog *progress) (cell, error) {
	const label = "embedded3 failover"
	var t tally
	for k := range cfg.failovers {
		stop := prog.start(fmt.Sprintf("%s %d/%d", label, k+1, cfg.failovers), 0)
		d, err := failoverOnce(ctx, k)
		stop()
		switch {
		case ctx.Err() != nil:
			return cell{}, ctx.Err()
		case err != nil:
			t.fail(err)
		default:
			t.ops++
			t.latency = append(t.latency, d)
		}
	}
	c := cell{
		Backend: "embedded3", Workload: "failover", Workers: 1, Ops: t.ops,
		Latency: summarize(t.latency), Errors: t.errors,
	}
	if t.firstErr != nil {
		c.FirstError = t.firstErr.Error()
	}
	return c, nil
}

// failoverOnce starts a cluster, kills its leader and times the next
// grant through a survivor.
func failoverOnce(ctx context.Context, k int) (time.Duration, error) {
	e, err := startEmbedded(3, 0)
	if err != nil {
		return 0, err
	}
	defer e.close()
	leader, err := e.leader()
	if err != nil {
		return 0, err
	}
	survivor, err := e.nodes[(leader+1)%3].NewLocker(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = survivor.Close() }()
	name := fmt.Sprintf("lockbench/failover/%d", k)
	// One op first: the survivor's session works before the kill.
	lease, err := survivor.Acquire(ctx, name)
	if err != nil {
		return 0, err
	}
	if err := lease.Release(ctx); err != nil {
		return 0, err
	}
	pctx, cancel := context.WithTimeout(ctx, failoverTimeout)
	defer cancel()
	killed := time.Now()
	_ = e.nodes[leader].Abort()
	for {
		lease, err := survivor.Acquire(pctx, name)
		if err == nil {
			d := time.Since(killed)
			_ = lease.Release(ctx)
			return d, nil
		}
		if pctx.Err() != nil {
			return 0, fmt.Errorf("no grant %v after the kill: %w", failoverTimeout, err)
		}
	}
}
