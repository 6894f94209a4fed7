// Package lock is the backend-neutral contract of quorumlock: a Locker hands
// out leases on names, each lease carries a fencing token, and a lease tells
// its holder when it has ended.
//
// Every backend (the embedded Raft node in package node, the ZooKeeper and
// Redis adapters) implements Locker and passes the conformance suite in
// package locktest. Code written against this package moves between backends
// by changing one constructor.
//
// # Leases
//
// A session lease (the default) is held while the Locker that acquired it is
// alive and can reach its store; the backend renews it in the background. A
// TTL lease (WithTTL) expires a fixed time after its grant or its last
// Refresh, whether or not the holder is alive.
//
// A lease is a value: keep it, watch Done or Context, and pass Token to every
// resource the lock protects so that the resource can reject writes from a
// holder that was paused past the end of its lease (fencing).
//
// # Guarantees
//
// A backend guarantees that at most one lease per name is granted at a time
// (as seen by the store), that tokens of a name strictly increase, and that a
// holder's Done closes before the store can grant the name elsewhere, as far
// as the holder's own clock and scheduling allow. A process that is paused
// (GC, SIGSTOP, a VM migration) cannot observe anything while paused: that is
// what fencing tokens are for.
package lock
