// Package node embeds a replica of quorumlock's lock state machine in the
// application, under hashicorp/raft, and serves lock.Locker on it.
//
// The zero Config is the embedded default: one in-memory node, the leader
// as soon as New returns, nothing on disk. Config.DataDir makes the node
// durable; a node restarted on the same DataDir keeps every lease, queue
// and token counter.
//
//	n, err := node.New(node.Config{DataDir: "/var/lib/myapp/locks"})
//	if err != nil { ... }
//	defer n.Close()
//	lease, err := n.Acquire(ctx, "schema-migration")
//	if err != nil { ... }
//	defer lease.Release(context.Background())
//	migrate(lease.Context(), lease.Token())
//
// Snapshot writes a backup of the replicated state from any node; Restore
// loads one into the leader of a fresh cluster, for disaster recovery.
//
// A Node is itself a lock.Locker (one session); NewLocker returns further
// independent clients on the same node. Both also implement lock.Lister,
// lock.Revoker and lock.Adopter (DESIGN.md, "Operating a lock"); Revoke
// and Adopt need every voter on a build of protocol 2. Fencing tokens are the Raft log
// index of the entry that granted the lease, or, after lock.TokenFloorer's
// FloorToken (protocol 4, DESIGN.md "Token floors"), one above the
// store's floor if that is larger (one floor for all names). See DESIGN.md for how expiry,
// hand-off and durability work and why.
package node
