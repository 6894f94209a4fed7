// Command lockbench measures a lock backend through the lock.Locker
// contract: the same workload code runs against every backend, and only
// the constructor of each worker's Locker differs (backend.go).
//
// It is a module of its own (it needs etcd's client and server as peers);
// run it in this directory, or from the repository's root with
// go run -C examples/lockbench . (file paths are then relative to this
// directory):
//
//	go run .                                  # embedded1,embedded3; W1,W2,W3; 5 s cells
//	go run . -backends embedded3 -failovers 5 # and the failover probe
//	go run . -backends embedded1 -idle 100000 # and the scale probe
//	go run . -backends lockd3                 # three lockd processes it builds and starts
//	go run . -backends redis,zookeeper -redis 127.0.0.1:6379 -zk 127.0.0.1:2181
//	go run . -backends zookeeper3 -zk3 127.0.0.1:2182,127.0.0.1:2183,127.0.0.1:2184
//	go run . -backends etcd,etcd3 -etcd 127.0.0.1:2379 -etcd3 127.0.0.1:2479,127.0.0.1:2579,127.0.0.1:2679
//	bash servers.sh  # those servers, on this machine (Debian redis-server, zookeeper; etcd built here)
//	go run . -json out.json -svg out.svg
//	go run . -backends embedded1 -workloads W2 -idle 1000000 -cpuprofile cpu.pprof  # then go tool pprof
//
// Backends: embedded1 and embedded3 are durable nodes in this process
// (three over TCP on loopback, workers spread over them); lockd3 is three
// lockd processes, each worker an HTTP client with its own client session
// talking to random replicas (internal/httplocker); redis and zookeeper(3)
// are this project's adapters; etcd and etcd3 are etcd's own recipe (its
// client's concurrency.Mutex), the peer etcd users run.
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
	"syscall"
)

func main() {
	// SIGTERM too: the backend's close must run (lockd3's processes and
	// data directory), as it does on Ctrl-C.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lockbench:", err)
		os.Exit(1)
	}
}
