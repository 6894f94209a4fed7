package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/metrics"
)

// Lock order. The node's mutexes nest in one order only; a goroutine that
// holds one may take those after it, never those before:
//
//	bridge.mu → Node.mu → client.mu → gate.mu
//	bridge.mu → expirer.mu
//
//   - bridge.mu (write) is held while the bridge hands a batch's events to
//     Node.dispatch and a restored state to Node.reconcile; both route to
//     clients under Node.mu (read), whose handle and reconcile take
//     client.mu. dispatch takes expirer.mu first and lets it go before
//     Node.mu: expirer.mu and Node.mu never nest.
//   - bridge.mu (read), through bridge.read, is held by expirer.lead (on
//     winning an election) and by a queued Acquire that checks its claim
//     against the state (client.queued, which takes client.mu); the
//     readers localInfo, list, Stats, Snapshot, waitUntil and admit take
//     it and nothing else, and Adopt takes client.mu under it to register
//     the adopted lease (client.adopted).
//   - Node.mu alone: register, unregisterSession, unregister and
//     closeClients hold nothing else; a client calls them without
//     client.mu.
//   - client.mu is held while ending leases (their timers), answering
//     waiters (buffered channels) and, in sessionLost, shutting the client's
//     ready gate. A lease takes client.mu from its timer (expireLocally),
//     in Release, Refresh and finish, and to start a background request
//     (client.background).
//   - expirer.mu: its timer callbacks take it alone.
//   - gate.mu and signal.mu are leaves.
//   - Node.commitMu is outside the order: commit holds it (read) while
//     waiting for a raft.Apply future, which the FSM goroutine answers
//     after taking bridge.mu, so no goroutine takes it while holding any
//     of the mutexes above (a client proposes after letting client.mu go);
//     shutdown holds it (write) around raft.Shutdown only.
//
// Nothing blocks under bridge.mu: event handlers send on buffered channels
// or without blocking (leasecore.Kick, waiter.fail).

// bridge adapts the pure fsm.State to raft.BatchingFSM. It owns the state
// under mu, hands every batch's events to sink while still holding mu (so a
// reader of the state under mu sees state and events consistently), and
// tracks the applied index for linearizable reads.
type bridge struct {
	mu       sync.RWMutex
	state    *fsm.State
	applied  uint64
	restores uint64        // Restore calls that succeeded
	bump     chan struct{} // closed and replaced whenever applied grows or a snapshot is restored
	// ages is when each grant and queued claim was applied here, for
	// entries after liveAfter: those applied once the node had started.
	ages      *ages
	liveAfter uint64
	sink      func([]fsm.Event)
	// observed gets every entry's events, and every restore, under mu
	// (observe.go); nil: none.
	observed *observers
	restore  func(*fsm.State) // called after Restore, holding mu
	// halted is why the bridge stopped applying: an entry it cannot apply.
	// From then on it applies nothing and takes no snapshot; onHalt (called
	// once, holding mu, must not block) stops the node.
	halted error
	onHalt func(error)
	// metrics gets each entry's apply time and each snapshot installed
	// once the node is live; set before Raft starts.
	metrics metrics.Sink
	// preloaded is the newest snapshot as the start-up checks decoded it,
	// for raft.NewRaft's restore of it (preload); nil otherwise.
	preloaded *decodedSnapshot
	// ownRestores is how many Restores to come are of the node's own
	// snapshot at start-up (1 if its store holds one), not installs.
	ownRestores int
	// beforeApply, if set, runs at the start of every ApplyBatch, before
	// the lock: a test hook that holds this replica's applies back.
	beforeApply atomic.Pointer[func()]
}

func newBridge(sink func([]fsm.Event), restored func(*fsm.State), onHalt func(error)) *bridge {
	return &bridge{
		state: fsm.New(), bump: make(chan struct{}), sink: sink, restore: restored, onHalt: onHalt,
		ages: newAges(), liveAfter: math.MaxUint64, metrics: metrics.Nop{},
	}
}

// entryResult is the response of one log entry: what the raft.ApplyFuture
// of its command answers.
type entryResult struct {
	res *fsmpb.Result
}

// ApplyBatch implements raft.BatchingFSM.
//
// A command that cannot be decoded, or that this version does not know and
// is not ignorable, halts the bridge: that entry and every later one stay
// unapplied (their responses nil) and the node stops (DESIGN.md, "Versions
// and rolling upgrades"). A replica that skipped an entry its peers applied
// would diverge silently, which is worse than stopping.
func (b *bridge) ApplyBatch(logs []*raft.Log) []any {
	if hook := b.beforeApply.Load(); hook != nil {
		(*hook)()
	}
	out := make([]any, len(logs))
	var events []fsm.Event
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	for i, l := range logs {
		if b.halted != nil {
			break
		}
		if l.Type == raft.LogCommand {
			res, evs, err := b.measuredApply(l)
			if err != nil {
				b.halt(err)
				break
			}
			events = append(events, evs...)
			b.ages.note(evs, now, l.Index > b.liveAfter)
			b.observed.entry(b.state, b.ages, evs, now)
			out[i] = entryResult{res: res}
		}
		b.applied = l.Index
	}
	if len(events) > 0 {
		b.sink(events)
	}
	close(b.bump)
	b.bump = make(chan struct{})
	return out
}

// apply decodes and applies one command entry; mu held.
func (b *bridge) apply(l *raft.Log) (*fsmpb.Result, []fsm.Event, error) {
	cmd, err := fsm.Decode(l.Data)
	if err == nil {
		var res *fsmpb.Result
		var evs []fsm.Event
		if res, evs, err = b.state.Apply(l.Index, cmd); err == nil {
			return res, evs, nil
		}
	}
	return nil, nil, fmt.Errorf("log entry %d cannot be applied by this build (protocol %d): %w; "+
		"it was written by a newer version or the log is corrupt: upgrade this node and restart it", l.Index, fsm.Protocol, err)
}

// measuredApply is apply, its duration reported to the metrics sink
// unless that is metrics.Nop (no clock read on every entry for nothing).
func (b *bridge) measuredApply(l *raft.Log) (*fsmpb.Result, []fsm.Event, error) {
	if _, nop := b.metrics.(metrics.Nop); nop {
		return b.apply(l)
	}
	start := time.Now()
	res, evs, err := b.apply(l)
	b.metrics.Applied(time.Since(start))
	return res, evs, err
}

// halt stops applying for good; mu held.
func (b *bridge) halt(err error) {
	b.halted = err
	b.onHalt(err)
}

// Apply implements raft.FSM for completeness; raft uses ApplyBatch.
func (b *bridge) Apply(l *raft.Log) any { return b.ApplyBatch([]*raft.Log{l})[0] }

// preload hands the bridge the newest snapshot as the start-up checks
// decoded it (nil: none, or drop it). raft.NewRaft restores exactly that
// snapshot first (newestSnapshot shows it only that one, and the checks
// passed its CRC), so its Restore takes the decoded state instead of
// decoding the same bytes again: start-up with a million locks decoded
// the snapshot twice. Any other Restore (an install, a backup) decodes
// what it is given.
func (b *bridge) preload(d *decodedSnapshot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.preloaded = d
}

// takePreloaded returns the preloaded state for the node's own restore,
// once; nil for any other Restore.
func (b *bridge) takePreloaded() (*fsm.State, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.preloaded
	b.preloaded = nil
	if d == nil || b.ownRestores == 0 {
		return nil, 0
	}
	return d.state, d.applied
}

// ownRestore says that the next Restore is raft.NewRaft restoring the
// node's own latest snapshot, not an install from the leader (metrics).
func (b *bridge) ownRestore() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ownRestores = 1
}

// goLive marks every entry applied from now on as applied live: New calls
// it once the node has caught up (ages).
func (b *bridge) goLive() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.liveAfter = b.applied
}

// waitApplied blocks until the applied index reaches index or ctx ends.
func (b *bridge) waitApplied(ctx context.Context, index uint64) error {
	return b.waitAppliedOr(ctx, nil, index)
}

// waitAppliedOr is waitApplied that also gives up when stop closes.
func (b *bridge) waitAppliedOr(ctx context.Context, stop <-chan struct{}, index uint64) error {
	return b.waitUntil(ctx, stop, func(applied uint64, _ *fsm.State) bool { return applied >= index })
}

// waitUntil blocks until cond holds of the applied index and state, checked
// under the read lock now and after every applied batch or restore, until
// ctx ends (its error) or stop closes (context.Canceled). cond must not
// block.
func (b *bridge) waitUntil(ctx context.Context, stop <-chan struct{}, cond func(applied uint64, st *fsm.State) bool) error {
	for {
		b.mu.RLock()
		done, bump := cond(b.applied, b.state), b.bump
		b.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-bump:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return context.Canceled
		}
	}
}

// read runs fn on the state under the read lock.
func (b *bridge) read(fn func(*fsm.State)) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	fn(b.state)
}

// readApplied runs fn on the applied index and the state under the read
// lock.
func (b *bridge) readApplied(fn func(applied uint64, st *fsm.State)) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	fn(b.applied, b.state)
}

// readAges runs fn on the state and its ages under the read lock.
func (b *bridge) readAges(fn func(*fsm.State, *ages)) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	fn(b.state, b.ages)
}

// Snapshot implements raft.FSM. A snapshot is framed as the applied index
// (8 bytes, big endian) followed by the fsm package's snapshot bytes, so a
// restored node knows how far it has applied before the next entry. The bytes are made under the read lock, so
// the snapshot is of one consistent state; Persist only writes them.
func (b *bridge) Snapshot() (raft.FSMSnapshot, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.halted != nil {
		// raft would record the refused entries as covered by it.
		return nil, fmt.Errorf("node: no snapshot after a halt: %w", b.halted)
	}
	data, err := b.state.Snapshot()
	if err != nil {
		return nil, err
	}
	framed := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(data)), b.applied)
	return snapshotBytes(append(framed, data...)), nil
}

// Restore implements raft.FSM: the new state replaces the old one under the
// write lock, or not at all.
func (b *bridge) Restore(rc io.ReadCloser) error {
	defer func() { _ = rc.Close() }()
	st, applied := b.takePreloaded()
	if st == nil {
		var err error
		if st, applied, err = readSnapshot(rc); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.halted != nil {
		return fmt.Errorf("node: no restore after a halt: %w", b.halted)
	}
	b.state = st
	b.applied = applied
	b.restores++
	if b.ownRestores > 0 {
		b.ownRestores-- // the node's own snapshot, restored by raft.NewRaft
	} else {
		b.metrics.SnapshotInstalled()
	}
	b.ages.prune(st)
	b.observed.restored(st, b.ages)
	close(b.bump)
	b.bump = make(chan struct{})
	if b.restore != nil {
		b.restore(st)
	}
	return nil
}

// readSnapshot decodes a snapshot framed by Snapshot: the state and the
// index it was applied up to.
func readSnapshot(r io.Reader) (*fsm.State, uint64, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, 0, fmt.Errorf("node: read snapshot: %w", err)
	}
	if len(data) < 8 {
		return nil, 0, fmt.Errorf("%w: snapshot frame of %d bytes", fsm.ErrCorrupt, len(data))
	}
	st, err := fsm.Restore(data[8:])
	if err != nil {
		return nil, 0, err
	}
	return st, binary.BigEndian.Uint64(data[:8]), nil
}

type snapshotBytes []byte

func (s snapshotBytes) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshotBytes) Release() {}
