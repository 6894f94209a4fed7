package migrate_test

import (
	"testing"

	"github.com/quorumlock/quorumlock/adapters/migrate"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/lock/locktest"
)

// TestConformance runs the contract's suite against a Dual Locker from
// Redis to a three-node embedded cluster, and against ToOnly and FromOnly
// Lockers (the wrapper's tracking of leases and calls around one store).
func TestConformance(t *testing.T) {
	from, to := redisStore(t), embeddedStore(t, 3)
	for _, phase := range []migrate.Phase{migrate.Dual, migrate.FromOnly, migrate.ToOnly} {
		t.Run(phase.String(), func(t *testing.T) {
			opts := []locktest.Option{}
			if phase == migrate.FromOnly {
				opts = append(opts, locktest.ListUnordered()) // Redis's SCAN
			}
			locktest.Run(t, func(t *testing.T) lock.Locker {
				return newMigrate(t, from, to, migrate.Config{Phase: phase, Tokens: testTokens})
			}, opts...)
		})
	}
}
