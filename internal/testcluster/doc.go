// Package testcluster starts clusters of real quorumlock nodes (package
// node) over TCP on loopback for tests. Only tests import it: it imports
// testing and fails the test it was started with.
//
// Usage:
//
//	c := testcluster.Start(t, testcluster.Options{Size: 3, Durable: true})
//	li := c.Leader()
//	l, err := c.Node(c.Follower()).Acquire(ctx, "job")
//	c.Kill(li)    // a crash as the peers see it (node.Abort)
//	c.Restart(li) // same DataDir, same address
//
// # Nodes
//
// Node i has ID "n<i+1>" (Options.Edit may change it or any other field of
// its Config) and SessionTTL 2 s. Either n1 founds the cluster and the
// others join it one after the other, or (Options.Peers) every node is a
// founding voter and all start at once. The harness opens every node's
// listener itself on 127.0.0.1:0 and passes it as Config.Listener, so the
// address is known before the node starts and a restart listens on the
// same one again. Node indexes are stable: a dead node's slot is nil
// (Node returns nil) until Restart, and Add appends a slot.
//
// Kill, Close and Stop end a node (an abort, a graceful close, or a stop of
// the caller's choice, such as Leave); Restart and RestartAll start dead
// nodes again on their DataDir (Options.Durable) and address. The cleanup
// aborts every live node concurrently: closed gracefully one after the
// other, the last ones would wait for a quorum that is already gone.
//
// # Fault layer
//
// Options.Net is the seam for a fault layer (cluster_test's faultNet): it
// wraps every listener and provides every Dial, and Kill and Restart tell
// it to isolate and reconnect the node. Without it nodes talk plain TCP.
//
// # Waiting
//
// WaitMembers, Leader and WaitCaughtUp poll with deadlines; nothing sleeps
// for a fixed time to wait for state.
package testcluster
