// Package redis implements lock.Locker over Redis with go-redis v9 — on one
// primary, or Redlock-style on a majority of several — the same lock
// contract as the embedded Raft node, for teams that already run Redis.
//
//	l, err := redis.New(redis.Config{Addr: "127.0.0.1:6379"})
//	if err != nil { ... }
//	defer l.Close()
//	err = lock.Do(ctx, l, "jobs/nightly", func(ctx context.Context) error { ... })
//
// Every state change is one Lua script, so no step is split across round
// trips: a grant writes the lease and bumps the name's fence counter (whose
// value is the lease's token) atomically; release and renewal compare the
// token inside the script. Session leases (the default) are renewed in the
// background and end (Done closes, ErrLost) when a renewal finds the lease
// gone or when renewals have failed until the server could have expired it;
// TTL leases (lock.WithTTL) expire on their own unless refreshed.
//
// On one primary waiters are served first come, first served: a queue per
// name lives in Redis, each waiter keeps a heartbeat deadline in it so that
// dead waiters are pruned, and only the head of the queue is granted. Releases wake the head
// waiter by pub/sub; a jittered, capped backoff covers lost messages.
//
// # Elections
//
// On one primary the Locker is a lock.Elector: a term is the mutex's lease
// of the election's name with its value beside it; candidates queue first
// come, first served, and the step that ends a term elects the first live
// candidate (no empty seat while one waits). A resigning term's Done
// closes before its release is sent. Observe subscribes to a channel per
// election that every state change publishes to and reads the first state
// before it returns (a store that does not answer within the op timeout
// fails it with lock.ErrNoQuorum); it reads the state again after a
// reconnect and when a term's expiry is due (an expiry runs no script),
// each read weighed at a marker it publishes on the observer's own
// connection, so that no change is replaced unseen. A name lives as one type at a time: Campaign on a mutex's name,
// or Acquire on an election's, fails with lock.ErrInvalidOption. In
// Redlock mode the Elector's methods return lock.ErrUnsupported.
//
// # Semaphores and read-write locks
//
// On one primary the Locker is a lock.Semaphores and a lock.RWLockers:
// every permit and every read or write lease is a lease of its own, with
// its own token from the name's counter, renewed, refreshed, released,
// revoked and adopted as the mutex's (an adopted permit keeps its slot).
// The holders live in a sorted set of deadlines beside the lease hash,
// which stays set while any of them lives; waiters share the mutex's
// queue, first come, first served (a queued writer holds back every
// later reader), and the step that frees room (a release, a withdrawal)
// grants every waiter there is room for. A name
// lives as one type at a time (and a semaphore with one limit): another
// type or limit fails with lock.ErrInvalidOption naming both. In Redlock
// mode every method of both interfaces returns lock.ErrUnsupported.
//
// # Operating
//
// Inspect reports the kind, age, holder (the Locker's ID), node
// (Config.Node) and queue of a name. On one primary the Locker is also a
// lock.Lister (SCAN over the lease keys: unspecified order, a name may be
// listed twice), a lock.Revoker (the holder's Done closes with
// lock.ErrRevoked, then it lets go; a TTL lease whose holder does not is
// ended by the store after the revoking Locker's SessionTTL) and a
// lock.Adopter (TTL leases only; the previous holder ends with
// lock.ErrAdopted). In Redlock mode these three return lock.ErrUnsupported.
//
// Config.Metrics takes a metrics.Sink (metrics/prommetrics for
// Prometheus): calls, grants, lease ends by reason, held and waiting
// leases; a Locker counts as one session. Config.Logger receives at Warn
// what an operator must know — a lease lost, revoked or adopted away, with
// name, token, holder and reason, and the Locker's session lapsing — and
// the routine at Debug. go-redis logs through a process-wide logger of its
// own (stderr by default); the adapter leaves it alone, since it is shared
// with every other go-redis client of the application, unless the
// application opts in with RouteClientLogs.
//
// Shutdown(ctx) stops a Locker within ctx: it ends and releases its leases
// and withdraws its queued claims; when ctx ends first it stops anyway,
// leaves the rest to Redis's expiry and returns ctx's error. Close is
// Shutdown bounded by CloseTimeout.
//
// # Failures
//
// A call that ends because Redis could not be reached (refused, timed out,
// no majority of Redlock primaries) returns an error wrapping
// lock.ErrNoQuorum, and ctx's error too if ctx ended it. Release and Refresh
// of a lease that has ended return an error wrapping lock.ErrNotHeld and the
// end cause, at once and whatever ctx they were given; a lease that ended
// without a Release is still deleted in Redis by token in the background.
//
// # Guarantees and non-guarantees
//
// Tokens of a name strictly increase while Redis keeps its data. With AOF and
// appendfsync always that includes crashes. Without persistence a restart
// loses the counters and tokens can repeat: the adapter detects such a reset
// through an epoch key and ends every lease it holds with lock.ErrLost
// (wrapping ErrStoreReset), but a Locker created after the reset, a partial
// loss (appendfsync everysec) or a failover to a lagging replica go
// undetected. Redis Cluster is not supported. The server must run
// maxmemory-policy noeviction, or it could evict a live lease: calls refuse
// any other policy, or one they cannot read, with ErrEvictionPolicy unless
// Config.SkipEvictionCheck is set. See DESIGN.md in this directory.
//
// # Redlock
//
// With Config.Addrs (three or more independent primaries) a lease is granted
// when a majority of them grant it, and held while a majority holds it. Each
// primary has its own token counter; the token of a grant is the largest of
// its majority's, written back as a floor to every primary's counter before
// the lease is handed out, so that tokens keep increasing across majorities
// while the primaries keep their data. Waiters are not served in order in
// this mode. Redlock's safety assumes bounded clock drift and process
// pauses; pass the token to the protected resource.
package redis
