package zookeeper

import (
	"context"
	"time"

	"github.com/quorumlock/quorumlock/internal/leasecore"
)

// probeInterval is the period of the session probe.
func (l *Locker) probeInterval() time.Duration { return l.sessionTimeout() / 8 }

// prober confirms the session every probe interval with a sync (which goes
// through the leader) and, while the store answers, looks at every held
// lease's node (pollLeases: how a holder learns of a revoke or an
// adoption) and deletes orphaned nodes.
func (l *Locker) prober() {
	defer l.bg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-l.kickProbe:
		case <-l.base.Done():
			return
		}
		err := l.call(l.base, ackSession, func() error { _, err := l.conn.Sync("/"); return err })
		leasecore.Kick(l.kickWatch)
		l.pruneWatches()
		if err == nil {
			// Bounded, so that a connection lost meanwhile does not hold up
			// the next probe.
			ctx, cancel := context.WithTimeout(l.base, l.probeInterval())
			l.pollLeases(ctx)
			l.cleanOrphans(ctx)
			cancel()
		} else if l.base.Err() == nil {
			l.log.Debug("session probe failed", "error", err)
		}
		t.Reset(l.probeInterval())
	}
}
