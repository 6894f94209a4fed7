// Package clustertest is quorumlock's fault-injection harness (issue 4):
// real nodes over loopback TCP with a fault layer between them, a nemesis,
// and invariant checks. See README.md.
package clustertest

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// seedFlag fixes the nemesis schedule; 0 picks one from the clock.
var seedFlag = flag.Int64("seed", 0, "nemesis seed (0: from the clock)")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
