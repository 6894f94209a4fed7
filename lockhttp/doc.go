// Package lockhttp serves quorumlock's lock API over HTTP, for callers in
// any language: client sessions, acquire, refresh and release by lease key,
// inspection, listing, revoke, and the operator's endpoints. It serves any
// lock.Locker; with a *node.Node (which implements ClientSessions) client
// sessions and lease keys work at every replica of the cluster. lockd is a
// main around it; an application mounts the same Handler on its own mux.
// DESIGN.md lists the endpoints and what each guarantees.
package lockhttp
