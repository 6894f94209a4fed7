// Package zookeeper implements lock.Locker over Apache ZooKeeper (3.5.4 or
// later: TTL nodes need it) with github.com/go-zookeeper/zk.
//
// Applications that already run ZooKeeper switch from the embedded Raft
// backend by changing one constructor:
//
//	l, err := zookeeper.New(zookeeper.Config{Servers: []string{"zk1:2181", "zk2:2181", "zk3:2181"}})
//	if err != nil { ... }
//	defer l.Close()
//	lease, err := l.Acquire(ctx, "schema-migration")
//
// Each lock name is a directory (a container node) under Config.Root; each
// Acquire or TryAcquire is one sequential child in it, and the lowest child
// holds the lock. Waiters are served first come, first served, each
// watching only its predecessor. The fencing token is the czxid of the
// holder's node.
//
// A Locker is one ZooKeeper session. Session leases are ephemeral nodes;
// their Done channel closes when the session expires, and also when the
// Locker has not been able to confirm the session for long enough that the
// server might have expired it (the deadline is the send time of the last
// acknowledged probe plus the session timeout minus Config.SessionMargin).
// WithTTL leases are ZooKeeper TTL nodes, which need the server flag
// -Dzookeeper.extendedTypesEnabled=true; the server deletes an unrefreshed
// one within its TTL plus one reaper interval (znode.container.checkIntervalMs).
//
// The Locker is also a lock.Lister, lock.Revoker and lock.Adopter. A
// revoked or adopted lease's holder learns of it from its Locker's own
// probe of its leases, within an eighth of the session timeout; a TTL
// lease whose holder does not let go is deleted by the revoker after a
// grace, a session lease goes with its holder's session.
//
// The Locker is a lock.Elector too: a Campaign is a claim like an Acquire,
// on a name that lives as an election (a mutex's claim and a candidate's
// never share a name: the later one fails with lock.ErrInvalidOption).
// The lowest child leads; observers watch it and deliver the latest state
// they read (a change that lasts less than a watch round trip may be
// coalesced into the next one).
//
// It is also a lock.Semaphores and a lock.RWLockers, with the same claims:
// a permit of limit L is granted while fewer than L children precede its
// own, and its slot is written into its node's data in sequence order; a
// reader is granted when no writer's child precedes its own, a writer as
// the lowest child. A name lives as one type at a time (mutex, election,
// semaphore of one limit, read-write lock); a call of another type fails
// with lock.ErrInvalidOption.
//
// Shutdown(ctx) stops a Locker within ctx: it withdraws its queued claims,
// ends its leases and deletes their nodes; when ctx ends first it returns
// ctx's error anyway: the session's nodes go with its own connection's
// close (on a caller's Conn the deletes go on in the background, bounded),
// a TTL node stays until its TTL. Close is Shutdown bounded by
// CloseTimeout.
//
// DESIGN.md in this directory explains the choices and their limits.
package zookeeper
