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
// Every backend keeps seven invariants, cited in the code as I1 to I7 and
// defined in full in this package's DESIGN.md:
//
//   - I1 mutual exclusion: at most one lease per name, as seen by the store.
//   - I2 fencing: tokens of a name strictly increase, across failovers and
//     restarts.
//   - I3 holder learns first: a holder's Done closes before the store can
//     grant the name elsewhere, as far as the holder's own clock and
//     scheduling allow. A paused process (GC, SIGSTOP, a VM migration)
//     cannot observe anything while paused: that is what tokens are for.
//   - I4 no lost wake-ups, no leftovers: a live waiter is granted as soon as
//     every earlier claim ends; a cancelled waiter leaves nothing behind.
//   - I5 determinism: replicas that applied the same log hold identical
//     state (Raft backend).
//   - I6 durability: with durable storage, a restart of the whole store
//     keeps every lease, queue and token counter.
//   - I7 availability: with a majority up, a free name can be acquired
//     within 2 s of a leader crash (Raft backend).
package lock
