// Package fsm is the pure, deterministic lock state machine replicated by the
// Raft backend: sessions, leases with fencing tokens, FIFO wait queues and
// request de-duplication. See DESIGN.md for the commands, the snapshot format
// and the determinism rules.
//
// State is not safe for concurrent use; the caller serialises Apply and
// reads.
package fsm
