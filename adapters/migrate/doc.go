// Package migrate moves a running application between two lock stores —
// Redis, ZooKeeper or the embedded Raft cluster — by rolling deploys, with
// no moment where two replicas hold one name and with fencing tokens that
// keep increasing across the move.
//
// A Locker from New wraps the Locker of the store in use today (from) and
// the one to move to (to). Its Phase says which it uses:
//
//   - FromOnly: from alone, as before the move;
//   - Dual: a lease is held in from and in to at once (taken in that
//     order, released in reverse, ended when either half ends);
//   - ToOnly: to alone.
//
// The runbook: deploy Dual on every replica; once none runs the old code,
// deploy ToOnly; retire from. Rollback is the same steps backwards. Never
// skip a phase: a replica using from alone and one using to alone share no
// store and can both hold a name. DESIGN.md explains why each step is safe
// and what each pair of stores guarantees for tokens.
package migrate
