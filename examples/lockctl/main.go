// Command lockctl is the operator's command line for lockd: it reads and
// acts on a cluster through any replica's HTTP API.
//
//	lockctl [flags] status                 this replica's view of the cluster
//	lockctl [flags] members                the cluster's members
//	lockctl [flags] locks [PREFIX]         held locks (every page)
//	lockctl [flags] inspect NAME           one lock, with its queue
//	lockctl [flags] revoke NAME TOKEN      end a lease (admin)
//	lockctl [flags] sessions               client sessions (admin)
//	lockctl [flags] transfer-leadership    move leadership off the leader (admin; at the leader)
//	lockctl [flags] snapshot save FILE     a backup of the store (admin)
//
// Flags: -addr URL (default http://127.0.0.1:8001, or $LOCKCTL_ADDR),
// -token-file FILE (or $LOCKCTL_TOKEN), -ca FILE, -cert FILE -key FILE
// (HTTPS), -json (the API's JSON instead of tables), -timeout DUR.
//
// Exit status: 0 done; 1 the request failed (no answer, or the server
// failed: 5xx); 2 bad usage; 3 the server refused it (4xx: not held, not
// found, unauthenticated, forbidden, not the leader...).
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
