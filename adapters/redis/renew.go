package redis

import (
	"context"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// renewLoop renews every session lease of the Locker every SessionTTL/3,
// in one pipeline, and checks that its TTL leases are still there (so that
// a store reset ends them too). A lease's deadline timer is independent of this loop: a
// renewal that blocks (a stalled server) cannot delay it.
func (c *instance) renewLoop() {
	defer c.bg.Done()
	tick := time.NewTicker(c.cfg.SessionTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		c.renewAll()
	}
}

func (c *instance) renewAll() {
	c.mu.Lock()
	leases := make([]*lease, 0, len(c.leases))
	first := time.Now().Add(c.cfg.SessionTTL / 3)
	for l := range c.leases {
		leases = append(leases, l)
		if at := l.dl.At(); l.ttl == 0 && at.Before(first) {
			first = at
		}
	}
	stale := c.stale
	c.stale = nil
	c.mu.Unlock()
	if len(stale) > 0 {
		c.releaseStale(stale)
	}
	if len(leases) == 0 {
		return
	}
	// A renewal answered after the first deadline can no longer save that
	// lease, and the next tick comes anyway.
	ctx, cancel := context.WithDeadline(c.bgCtx, first)
	defer cancel()
	for try := 0; try < 2; try++ {
		sent := time.Now()
		pipe := c.rdb.Pipeline()
		cmds := make([]*goredis.Cmd, len(leases))
		epochs := make([]string, len(leases))
		for i, l := range leases {
			epoch, fresh := c.epochArgs()
			epochs[i] = epoch
			px := l.px.Milliseconds()
			if l.ttl > 0 {
				px = 0 // a TTL lease is only checked: gone early means lost
			}
			cmds[i] = renewScript.EvalSha(ctx, pipe, c.keys(l.Name()), epoch, fresh, c.wakePrefix, l.Token(), px, l.claim)
		}
		_, _ = pipe.Exec(ctx)
		noScript := false
		c.noteRenewals(cmds)
		for i, cmd := range cmds {
			v, err := cmd.Slice()
			switch {
			case goredis.HasErrorPrefix(err, "NOSCRIPT"):
				noScript = true
			case err != nil:
				c.log.Debug("redis lock: renewal failed", "name", leases[i].Name(), "error", err)
			case len(v) == 0:
				c.log.Warn("redis lock: renewal answered an empty array", "name", leases[i].Name())
			case v[0] == "epoch" && len(v) > 1:
				cur, _ := v[1].(string)
				c.adoptEpoch(epochs[i], cur)
			case leases[i].ttl > 0 && v[0] == "ok":
			default:
				if err := leases[i].settleRenewal(v, sent); err != nil {
					c.log.Debug("redis lock: session lease lost at renewal", "name", leases[i].Name(), "error", err)
				}
			}
		}
		if !noScript {
			return
		}
		// The script cache was flushed (a restart): load and renew again.
		if err := renewScript.Load(ctx, c.rdb).Err(); err != nil {
			c.log.Debug("redis lock: loading the renew script", "error", err)
			return
		}
	}
}

// noteRenewals records whether a renewal round reached the store (any
// answer but a failure to reach it): then a later lapse is a new one and
// is logged again (lapse); else why not.
func (c *instance) noteRenewals(cmds []*goredis.Cmd) {
	var failed error
	for _, cmd := range cmds {
		if err := cmd.Err(); err == nil || !retryable(err) {
			c.mu.Lock()
			c.lapsed, c.renewed = false, nil
			c.mu.Unlock()
			return
		} else if failed == nil {
			failed = err
		}
	}
	c.mu.Lock()
	c.renewed = failed
	c.mu.Unlock()
}

// maxStaleTries is the least number of attempts to delete a lease that
// ended by its deadline; the renewer goes on trying until the store's own
// expiry would have deleted it (staleLease.until), so that a Refresh the
// store applied late cannot keep the name held for a whole TTL unnoticed.
const maxStaleTries = 3

// releaseStale deletes leases that ended by their local deadline from the
// store, by token (so a later holder is never touched). Best effort: this
// only shortens the time until the name is free again.
func (c *instance) releaseStale(stale []staleLease) {
	ctx, cancel := context.WithTimeout(c.bgCtx, c.cfg.SessionTTL/3)
	defer cancel()
	if err := releaseScript.Load(ctx, c.rdb).Err(); err != nil {
		c.keepStale(stale)
		return
	}
	pipe := c.rdb.Pipeline()
	cmds := make([]*goredis.Cmd, len(stale))
	for i, s := range stale {
		epoch, fresh := c.epochArgs()
		cmds[i] = releaseScript.EvalSha(ctx, pipe, c.keys(s.name), epoch, fresh, c.wakePrefix, s.token, s.claim)
	}
	_, _ = pipe.Exec(ctx)
	var again []staleLease
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil && retryable(err) {
			again = append(again, stale[i])
		}
	}
	c.keepStale(again)
}

func (c *instance) keepStale(stale []staleLease) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range stale {
		if s.tries++; s.tries < maxStaleTries || time.Now().Before(s.until) {
			c.stale = append(c.stale, s)
		}
	}
}
