package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLockd_FailoverTime measures, over three durable lockd processes, the
// time from SIGKILL of the leader process to the next successful acquire
// of a free lock through HTTP on a surviving process; the killed process
// restarts and catches up between runs. It runs only when
// QUORUMLOCK_FAILOVER_RUNS is set:
//
//	QUORUMLOCK_FAILOVER_RUNS=20 go test -run TestLockd_FailoverTime -v ./examples/lockd
func TestLockd_FailoverTime(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("QUORUMLOCK_FAILOVER_RUNS"))
	if runs <= 0 {
		t.Skip("set QUORUMLOCK_FAILOVER_RUNS=N to measure failover N times")
	}
	bin := buildLockd(t)
	c := startProcCluster(t, bin, 3)
	var took []time.Duration
	var last uint64
	for i := range runs {
		leader := c.leader()
		survivors := c.others(leader)
		client := survivors[i%len(survivors)]

		killed := time.Now()
		leader.kill()
		// Retry at once on any failure, as an impatient client would; a
		// request itself waits up to the server's 5 s for a leader.
		for {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			code, r, err := client.call(ctx, http.MethodPost, fmt.Sprintf("/v1/locks/failover-%d?ttl=1m", i))
			cancel()
			if err == nil && code == http.StatusOK {
				last = r.Token
				break
			}
			require.Less(t, time.Since(killed), 30*time.Second, "no acquire 30 s after the kill: %d %+v %v", code, r, err)
		}
		took = append(took, time.Since(killed))
		t.Logf("run %d: killed leader %s, acquired on %s after %v", i+1, leader.id, client.id, took[i].Round(time.Millisecond))

		leader.start(t, bin)
		waitCaughtUp(t, leader, last, 30*time.Second)
		require.NoError(t, c.waitLeader("", 30*time.Second))
	}
	slices.Sort(took)
	pct := func(p float64) time.Duration {
		return took[min(len(took)-1, int(p*float64(len(took))))].Round(time.Millisecond)
	}
	median := took[len(took)/2]
	if len(took)%2 == 0 {
		median = (took[len(took)/2-1] + took[len(took)/2]) / 2
	}
	t.Logf("leader SIGKILL to next acquire, %d runs: min %v, median %v, p90 %v, p99 %v, max %v",
		len(took), took[0].Round(time.Millisecond), median.Round(time.Millisecond), pct(0.9), pct(0.99), took[len(took)-1].Round(time.Millisecond))
}
