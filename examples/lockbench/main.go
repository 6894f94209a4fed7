// Command lockbench measures a lock backend through the lock.Locker
// contract: the same workload code runs against every backend, and only
// the constructor of each worker's Locker differs (backend.go).
//
//	go run ./examples/lockbench                                  # embedded1,embedded3; W1,W2,W3; 5 s cells
//	go run ./examples/lockbench -backends embedded3 -failovers 5 # and the failover probe
//	go run ./examples/lockbench -backends embedded1 -idle 100000 # and the scale probe
//	go run ./examples/lockbench -backends redis,zookeeper -redis 127.0.0.1:6379 -zk 127.0.0.1:2181
//	go run ./examples/lockbench -backends zookeeper3 -zk3 127.0.0.1:2182,127.0.0.1:2183,127.0.0.1:2184
//	bash examples/lockbench/servers.sh  # those servers, on this machine (Debian redis-server, zookeeper)
//	go run ./examples/lockbench -json out.json -svg out.svg
//
// Workloads (workload.go), each a cell of -duration after -warmup, every
// worker its own Locker (its own session), one op = Acquire then Release:
//
//	W1        1 worker on its own name
//	W2        16 workers, each on its own name
//	W3        16 workers on one name: every op is a hand-off
//	failover  embedded3 only: the leader node is killed (Abort); the time
//	          until an Acquire through a survivor succeeds, -failovers times
//	scale     W2 while one Locker holds -idle idle locks
//
// Every cell reports ops/s, the latency of an op (p50, p99, p99.9, max),
// the wait from the Acquire call to the grant, errors and the
// mutual-exclusion violations observed (two holders of one name inside
// this process at once).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lockbench:", err)
		os.Exit(1)
	}
}
