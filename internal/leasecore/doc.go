// Package leasecore is the part of a lease that every backend shares: its
// identity (name and fencing token), the single state change from held to
// ended with a cause, the local deadline of I3, and the small waiting
// helpers the backends retry with (kick, jittered backoff).
//
// Every lock.Lease in the module embeds a Core and keeps its Ender in an
// unexported field: the node's lease, the Redis and Redlock leases, the
// ZooKeeper lease and lockd's HTTP lease. The
// package imports the standard library and package lock only, so a
// Redis-only or ZooKeeper-only user links no Raft code through it.
//
// Locking is the embedder's: Core is safe for concurrent use on its own (it
// rests on a context), but a backend that keeps other state beside it (a
// registry of live leases, a deadline) ends the lease under its own mutex,
// so that "ended" and "removed from the registry" happen together.
package leasecore
