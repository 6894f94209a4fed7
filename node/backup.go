package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// ErrNotLeader: Restore was called on a node that is not the leader; the
// message names the leader this node knows. Restore verifies the backup
// before it looks at leadership, so this error also says the backup is
// valid.
var ErrNotLeader = errors.New("node: not the leader")

// errNoSnapshot: the node's snapshot store holds no snapshot.
var errNoSnapshot = errors.New("node: no snapshot in the store")

// SnapshotInfo describes a backup that Snapshot wrote.
type SnapshotInfo struct {
	// Index is the Raft index the backed-up state is at: no token in it is
	// above Index, and after a Restore of the backup every new token is.
	Index uint64
	// Term is the Raft term of the entry at Index.
	Term uint64
	// Size is the number of bytes written to w, header included.
	Size int64
}

// Snapshot writes a backup of the replicated state, as this node has
// applied it, to w: a versioned header (the index and term the state is
// at, its length, a SHA-256 checksum) and the state (node/DESIGN.md,
// "Backup and restore"). It works on any node, leader or follower, with or
// without a quorum. A follower's applied state may lag the leader's: a
// linearizable Inspect on the same node first makes the backup hold every
// operation that completed before that Inspect.
//
// The backup is made from a Raft snapshot, which stays in the node's
// snapshot store (Raft compacts its log behind it, as after a periodic
// snapshot); if Raft has nothing new to snapshot, the newest stored
// snapshot is used. Before writing, Snapshot verifies the backup as
// Restore will.
//
// ctx is checked before and between the steps; Raft's snapshot and the
// write to w take no ctx and run to their end. On a write error, Size
// bytes were written.
func (n *Node) Snapshot(ctx context.Context, w io.Writer) (SnapshotInfo, error) {
	if err := n.usable(ctx); err != nil {
		return SnapshotInfo{}, err
	}
	meta, frame, err := n.userSnapshot()
	if err != nil {
		return SnapshotInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return SnapshotInfo{}, err
	}
	enc, err := backupOf(meta, frame)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return SnapshotInfo{}, err
	}
	written, err := w.Write(enc)
	info := SnapshotInfo{Index: meta.Index, Term: meta.Term, Size: int64(written)}
	if err != nil {
		return info, fmt.Errorf("node: write backup: %w", err)
	}
	return info, nil
}

// Restore replaces the replicated state with a backup that Snapshot
// wrote. It is for disaster recovery into a fresh cluster, and runs on
// its leader only (ErrNotLeader elsewhere).
//
// WARNING (as for hashicorp/raft's Restore, which this uses): the leader
// takes on the backup's state and commits ahead of its followers until
// they have installed it; everything the cluster held before is lost
// (its leases end with lock.ErrLost). Stop every process of the old
// cluster first, and run this build or a newer one on every member.
//
// Restore reads all of r and verifies it first: a truncated, damaged or
// foreign backup, or one of a later format, is refused with an error
// wrapping fsm.ErrCorrupt and changes nothing. Then Raft takes the state,
// numbered so that every token issued afterwards exceeds every token in
// it; the leader arms its timers from it; a barrier entry makes reads on
// every node wait for it. When Restore returns nil, a quorum holds the
// restored state and every read sees it.
//
// The restored cluster holds every name with its holder, token, owner and
// queue, and every session, but not the old cluster's clients: nobody
// renews their sessions, which expire one session TTL after the restore
// as a crashed process's would, their session leases passing to the next
// in the queue. TTL leases stay until their TTL, counted from the
// restore, or a Revoke, Adopt or Release by token.
//
// ctx is checked before and between the steps and bounds the handing of
// the restore to Raft; once Raft has taken it, it runs to its end. An
// error after that says the restore took effect on this node although a
// quorum did not confirm it: check with Inspect, and restore again if
// need be.
func (n *Node) Restore(ctx context.Context, r io.Reader) error {
	if err := n.usable(ctx); err != nil {
		return err
	}
	b, err := readBackup(r)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.raft.State() != raft.Leader {
		return n.leaderErr()
	}
	if err := n.haltErr(); err != nil {
		return fmt.Errorf("node: restore: this node stopped applying: %w", err)
	}
	if err := n.restorable(b.state); err != nil {
		return err
	}
	before := n.bridge.restoreCount()
	err = n.raftRestore(ctx, b)
	if err != nil && n.bridge.restoreCount() == before {
		return err // nothing restored
	}
	n.rearm()
	if err != nil {
		return fmt.Errorf("node: restore took effect on this node but no quorum confirmed it: %w", err)
	}
	n.log.Info("restored a backup", "index", b.index, "term", b.term,
		"sessions", len(b.state.Sessions()), "locks", b.state.LockCount())
	return n.barrierAfterRestore(ctx)
}

// restorable refuses a backup whose state is at a protocol level that not
// every voter speaks: the level is part of the state, so installing it
// would commit the cluster to commands (and a snapshot format) an older
// voter cannot apply. As for a command, a level the cluster has committed
// already needs no look at the voters.
func (n *Node) restorable(st *fsm.State) error {
	need := st.Protocol()
	if need <= 1 || need <= n.committedProtocol() {
		return nil
	}
	lowest, voter, err := n.lowestVoter()
	if err != nil {
		return n.leaderErr()
	}
	if lowest < need {
		return fmt.Errorf("node: restore: %w: the backup is at protocol level %d and voter %s speaks %d", ErrUnsupported, need, voter, lowest)
	}
	return nil
}

// usable is ErrClosed once the node is closed, else ctx's error.
func (n *Node) usable(ctx context.Context) error {
	if n.ctx.Err() != nil {
		return lock.ErrClosed
	}
	return ctx.Err()
}

// leaderErr is ErrNotLeader naming the leader this node knows.
func (n *Node) leaderErr() error {
	if id, _ := n.Leader(); id != "" {
		return fmt.Errorf("%w: the leader is %s", ErrNotLeader, id)
	}
	return fmt.Errorf("%w: no leader known", ErrNotLeader)
}

// userSnapshot has Raft take a snapshot and reads it back, or reads the
// newest stored one if Raft has nothing new to snapshot.
func (n *Node) userSnapshot() (*raft.SnapshotMeta, []byte, error) {
	f := n.raft.Snapshot()
	open := f.Open
	switch err := f.Error(); {
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
		open = n.openNewest
	case errors.Is(err, raft.ErrRaftShutdown):
		return nil, nil, fmt.Errorf("%w: %w", lock.ErrClosed, err)
	case err != nil:
		return nil, nil, fmt.Errorf("node: snapshot: %w", err)
	}
	return readFrame(open)
}

// openNewest opens the newest snapshot of the node's snapshot store.
func (n *Node) openNewest() (*raft.SnapshotMeta, io.ReadCloser, error) {
	metas, err := n.snaps.List()
	if err != nil {
		return nil, nil, fmt.Errorf("node: list snapshots: %w", err)
	}
	if len(metas) == 0 {
		return nil, nil, errNoSnapshot
	}
	return n.snaps.Open(metas[0].ID)
}

// readFrame opens a stored snapshot and reads it whole: the bridge's
// frame.
func readFrame(open func() (*raft.SnapshotMeta, io.ReadCloser, error)) (*raft.SnapshotMeta, []byte, error) {
	meta, rc, err := open()
	if err != nil {
		return nil, nil, fmt.Errorf("node: open snapshot: %w", err)
	}
	defer func() { _ = rc.Close() }()
	frame, err := io.ReadAll(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("node: read snapshot %s: %w", meta.ID, err)
	}
	return meta, frame, nil
}

// backupOf makes the backup file of a stored snapshot, framed by the
// bridge (the applied index, 8 bytes, then the fsm snapshot), and verifies
// it as Restore will.
func backupOf(meta *raft.SnapshotMeta, frame []byte) ([]byte, error) {
	if len(frame) < 8 {
		return nil, fmt.Errorf("%w: snapshot %s: frame of %d bytes", fsm.ErrCorrupt, meta.ID, len(frame))
	}
	if applied := binary.BigEndian.Uint64(frame); applied > meta.Index {
		return nil, fmt.Errorf("%w: snapshot %s: applied index %d above its index %d", fsm.ErrCorrupt, meta.ID, applied, meta.Index)
	}
	enc := encodeBackup(meta.Index, meta.Term, frame[8:])
	if _, err := readBackup(bytes.NewReader(enc)); err != nil {
		return nil, fmt.Errorf("node: snapshot %s makes no valid backup: %w", meta.ID, err)
	}
	return enc, nil
}

// raftRestore hands the verified backup to Raft's user restore, numbered
// from the backup's index (Raft uses max(index, last log index) + 1), and
// framed for the bridge with the backup's index as the applied index.
// Like every Apply it holds commitMu for reading: the no-op Raft commits
// inside is a future that Shutdown could drop.
func (n *Node) raftRestore(ctx context.Context, b *backup) error {
	frame := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(b.body)), b.index)
	frame = append(frame, b.body...)
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: b.index, Term: b.term, Size: int64(len(frame))}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	n.commitMu.RLock()
	defer n.commitMu.RUnlock()
	err := n.raft.Restore(meta, bytes.NewReader(frame), timeout)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", n.leaderErr(), err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", lock.ErrClosed, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("node: restore: %w: %w", context.DeadlineExceeded, err)
	default:
		return fmt.Errorf("node: restore: %w", err)
	}
}

// rearm arms the leader's timers from the restored state, as on winning
// an election (onLeadership), if this node still leads the term its
// barrier opened; a new leader arms its own from its state.
func (n *Node) rearm() {
	if !n.leadsTerm() {
		return
	}
	n.exp.follow()
	n.bridge.read(n.exp.lead)
}

// barrierAfterRestore commits a term barrier after the restore: Raft's
// own no-op never reaches the bridge, whose applied index is the
// backup's, below the leader's commit index, so without it a
// linearizable read would wait for the next write. A barrier that fails
// because this node no longer leads is no error: the next leader commits
// its own.
func (n *Node) barrierAfterRestore(ctx context.Context) error {
	_, _, err := n.proposeLocal(ctx, &fsmpb.Command{Ignorable: true})
	switch {
	case err == nil:
		return nil
	case n.raft.State() != raft.Leader:
		n.log.Debug("barrier after a restore: no longer leading", "error", err)
		return nil
	default:
		return fmt.Errorf("node: restored, but the barrier after it was not committed (reads wait for the next write): %w", err)
	}
}

// restoreCount is the number of snapshots the bridge has restored.
func (b *bridge) restoreCount() uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.restores
}
