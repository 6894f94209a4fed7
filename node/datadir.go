package node

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/internal/boltcheck"
	"github.com/quorumlock/quorumlock/internal/raftlog"
)

// ErrCorruptData is wrapped by New's errors about a damaged DataDir: a file
// that is not what the node wrote there. The error names the file; see
// node/DESIGN.md, "Durability", for what is checked and how to recover.
var ErrCorruptData = errors.New("node: corrupt data in DataDir")

const (
	logFile = "raft.db" // LogStoreBolt's
	logDir  = "log"     // LogStoreLog's
	// snapshotDir is where raft's FileSnapshotStore keeps its snapshots,
	// one directory each; a name ending in tmpSuffix is one it did not
	// finish, which it ignores.
	snapshotDir = "snapshots"
	tmpSuffix   = ".tmp"
)

// openStores opens the Raft log, stable and snapshot stores: in memory, or
// in DataDir once its files passed the start-up checks.
func (n *Node) openStores(rc *raft.Config) (raft.LogStore, raft.StableStore, raft.SnapshotStore, error) {
	if n.cfg.DataDir == "" {
		mem := raft.NewInmemStore()
		return mem, mem, raft.NewInmemSnapshotStore(), nil
	}
	dir := n.cfg.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("node: DataDir: %w", err)
	}
	format, err := dataDirFormat(dir, n.cfg.LogStore)
	if err != nil {
		return nil, nil, nil, err
	}
	open := n.openLog
	if format == LogStoreBolt {
		open = n.openBolt
	}
	logs, stable, path, err := open(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, rc.Logger)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("node: snapshot store in DataDir: %w", err)
	}
	newest, decoded, err := checkSnapshots(dir, rc.Logger)
	if err != nil {
		return nil, nil, nil, err
	}
	n.bridge.preload(decoded)
	if err := checkLog(logs, newest, path); err != nil {
		return nil, nil, nil, err
	}
	if err := n.dropLogBelow(logs, newest, path); err != nil {
		return nil, nil, nil, err
	}
	cached, err := raft.NewLogCache(512, logs)
	if err != nil {
		return nil, nil, nil, err
	}
	return cached, stable, newestSnapshot{snaps}, nil
}

// dataDirFormat is the format of dir's log: the one it holds, or want's
// for a new DataDir (LogStoreLog for LogStoreAuto). A DataDir holding the
// other format than want names is ErrInvalidConfig; one holding both, or
// neither beside snapshots, ErrCorruptData.
func dataDirFormat(dir string, want LogStore) (LogStore, error) {
	bolt, err := exists(filepath.Join(dir, logFile))
	if err != nil {
		return 0, err
	}
	segs, err := exists(filepath.Join(dir, logDir))
	if err != nil {
		return 0, err
	}
	have := LogStoreLog
	switch {
	case bolt && segs:
		return 0, fmt.Errorf("%w: %s and %s both exist: which is the log?", ErrCorruptData, filepath.Join(dir, logFile), filepath.Join(dir, logDir))
	case bolt:
		have = LogStoreBolt
	case !segs:
		names, err := snapshotNames(dir)
		if err != nil {
			return 0, err
		}
		if len(names) > 0 {
			return 0, fmt.Errorf("%w: %s and %s are missing, but the DataDir holds snapshots", ErrCorruptData, filepath.Join(dir, logFile), filepath.Join(dir, logDir))
		}
		if want == LogStoreAuto {
			return LogStoreLog, nil
		}
		return want, nil // a new node
	}
	if want != LogStoreAuto && want != have {
		return 0, fmt.Errorf("%w: LogStore %v, but DataDir %s holds a %v log; to change the format, empty the DataDir and join the cluster again, or restore a backup into a new DataDir", ErrInvalidConfig, want, dir, have)
	}
	return have, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("node: DataDir: %w", err)
	}
	return true, nil
}

// openLog opens LogStoreLog's store, which checks every frame as it opens
// and cuts the torn tail a crash left (logged at Warn).
func (n *Node) openLog(dir string) (raft.LogStore, raft.StableStore, string, error) {
	path := filepath.Join(dir, logDir)
	if err := checkLogDir(dir, path); err != nil {
		return nil, nil, "", err
	}
	store, err := raftlog.Open(path, raftlog.Options{})
	switch {
	case errors.Is(err, raftlog.ErrCorrupt):
		return nil, nil, "", fmt.Errorf("%w: %w", ErrCorruptData, err)
	case errors.Is(err, raftlog.ErrInUse):
		return nil, nil, "", fmt.Errorf("node: open log store in DataDir: %s is in use: %w", path, err)
	case err != nil:
		return nil, nil, "", fmt.Errorf("node: open log store in DataDir: %w", err)
	}
	n.closers = append(n.closers, store.Close)
	if bytes, file := store.Dropped(); bytes > 0 {
		n.cfg.Logger.Warn("log store: cut the torn tail of a write a crash interrupted", "file", file, "bytes", bytes)
	}
	return store, store, path, nil
}

// checkLogDir refuses a log/ that lost its store (no stable file, which
// the store writes first) beside snapshots: Open would make a new, empty
// one, and the node would start from the snapshot alone, its log, term
// and vote gone.
func checkLogDir(dir, path string) error {
	names, err := snapshotNames(dir)
	if err != nil || len(names) == 0 {
		return err
	}
	ok, err := raftlog.Exists(path)
	switch {
	case err != nil:
		return fmt.Errorf("node: DataDir: %w", err)
	case !ok:
		return fmt.Errorf("%w: %s is missing, but the DataDir holds snapshots", ErrCorruptData, filepath.Join(path, "stable"))
	}
	return nil
}

// openBolt opens LogStoreBolt's raft.db once checkLogFile passed it.
func (n *Node) openBolt(dir string) (raft.LogStore, raft.StableStore, string, error) {
	path := filepath.Join(dir, logFile)
	if err := checkLogFile(path); err != nil {
		return nil, nil, "", err
	}
	store, err := raftboltdb.New(raftboltdb.Options{
		Path: path,
		BoltOptions: &bbolt.Options{
			Timeout:        time.Second, // another process holds the file: fail, don't hang
			NoFreelistSync: true,
			FreelistType:   bbolt.FreelistMapType,
		},
	})
	if err != nil {
		return nil, nil, "", fmt.Errorf("node: open log store in DataDir: %w", err)
	}
	n.closers = append(n.closers, store.Close)
	return store, store, path, nil
}

// checkLogFile checks raft.db at path before bbolt maps it read-write,
// which it does trusting every byte: an empty file, then its whole page
// structure (internal/boltcheck) and raft-boltdb's layout (raftLayout).
// Meanwhile a read-only bbolt handle holds the file's shared lock, so that
// nobody writes it under the check and a DataDir in use still fails as
// such. A new DataDir has no raft.db yet: nothing to check.
func checkLogFile(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("node: DataDir: %w", err)
	case fi.Size() == 0:
		return fmt.Errorf("%w: %s is empty", ErrCorruptData, path)
	}
	db, openErr := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(openErr, berrors.ErrTimeout) {
		return fmt.Errorf("node: open log store in DataDir: %s is in use: %w", path, openErr)
	}
	err = boltcheck.Check(path, raftLayout)
	if db != nil {
		_ = db.Close() // read-only: nothing to lose
	}
	switch {
	case errors.Is(err, boltcheck.ErrCorrupt):
		return fmt.Errorf("%w: %s: %w", ErrCorruptData, path, err)
	case err != nil:
		return fmt.Errorf("node: check %s: %w", path, err)
	case openErr != nil:
		return fmt.Errorf("node: open log store in DataDir: %w", openErr)
	}
	return nil
}

// raftLayout judges raft.db's contents as raft-boltdb reads them: buckets
// at the top, log keys and the terms 8-byte integers (it panics on others).
func raftLayout(buckets [][]byte, key, value []byte) error {
	if len(buckets) == 0 {
		return fmt.Errorf("key %q outside any bucket", key)
	}
	if len(buckets) > 1 {
		return nil
	}
	switch string(buckets[0]) {
	case "logs":
		if len(key) != 8 {
			return fmt.Errorf("a log key of %d bytes", len(key))
		}
	case "conf":
		if (string(key) == "CurrentTerm" || string(key) == "LastVoteTerm") && len(value) != 8 {
			return fmt.Errorf("%s of %d bytes", key, len(value))
		}
	}
	return nil
}

// snapshotNames lists the snapshot directories in dir, the unfinished ones
// left out.
func snapshotNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, snapshotDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: DataDir: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), tmpSuffix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// checkSnapshots checks every snapshot in dir: it lists (its meta.json
// decodes, of a version raft knows) and opens (the CRC of its state.bin
// matches); the newest also restores. It returns the newest one's index, 0
// if there is none, and what it decoded (nil if none), which raft.NewRaft's
// restore of it then takes instead of decoding it again (bridge.preload).
func checkSnapshots(dir string, logger hclog.Logger) (uint64, *decodedSnapshot, error) {
	// A store that lists them all: the node's keeps 2, and a failed reap
	// leaves more.
	all, err := raft.NewFileSnapshotStoreWithLogger(dir, math.MaxInt32, logger)
	if err != nil {
		return 0, nil, fmt.Errorf("node: snapshot store in DataDir: %w", err)
	}
	metas, err := all.List()
	if err != nil {
		return 0, nil, fmt.Errorf("node: list snapshots: %w", err)
	}
	names, err := snapshotNames(dir)
	if err != nil {
		return 0, nil, err
	}
	listed := map[string]bool{}
	for _, m := range metas {
		listed[m.ID] = true
	}
	var newest *decodedSnapshot
	for _, name := range names {
		path := filepath.Join(dir, snapshotDir, name)
		if !listed[name] {
			return 0, nil, fmt.Errorf("%w: snapshot %s: meta.json unreadable, or of a version this node does not know", ErrCorruptData, path)
		}
		d, err := checkSnapshot(all, name, name == metas[0].ID)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: snapshot %s: %w", ErrCorruptData, path, err)
		}
		if d != nil {
			newest = d
		}
	}
	if len(metas) == 0 {
		return 0, nil, nil
	}
	return metas[0].Index, newest, nil
}

// decodedSnapshot is a snapshot's state and the index it was applied up to.
type decodedSnapshot struct {
	state   *fsm.State
	applied uint64
}

// checkSnapshot opens snapshot id, which checks its CRC, and with restore
// also decodes it and returns what it decoded.
func checkSnapshot(store raft.SnapshotStore, id string, restore bool) (*decodedSnapshot, error) {
	_, rc, err := store.Open(id)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	if !restore {
		return nil, nil
	}
	st, applied, err := readSnapshot(rc)
	if err != nil {
		return nil, err
	}
	return &decodedSnapshot{st, applied}, nil
}

// checkLog reads the log back from the entry after the newest snapshot (at
// index snapshot; 0: none), or its first if later, to its last: no entry
// missing, each decoding, stored under its own index, and reaching back to
// the snapshot. Raft would panic on a missing entry as it starts, the
// bridge on a command it cannot decode. Entries the snapshot covers are
// not read: raft does not replay them, and a follower that caught up from
// a snapshot keeps an older stretch of log below it with a gap between
// (raft trims the log to TrailingLogs, not to the snapshot), which is
// healthy.
func checkLog(logs raft.LogStore, snapshot uint64, path string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrCorruptData, path, fmt.Sprintf(format, args...))
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return bad("first index: %v", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return bad("last index: %v", err)
	}
	if last == 0 {
		return nil
	}
	if last > snapshot && first > snapshot+1 {
		return bad("the log starts at entry %d but the newest snapshot ends at %d: entries %d to %d are missing", first, snapshot, snapshot+1, first-1)
	}
	for i := max(first, snapshot+1); i <= last; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return bad("log entry %d: %v", i, err)
		}
		if err := checkEntry(&l, i); err != nil {
			return bad("log entry %d: %v", i, err)
		}
	}
	return nil
}

// checkEntry checks one log entry read from under index.
func checkEntry(l *raft.Log, index uint64) (err error) {
	if l.Index != index {
		return fmt.Errorf("says it is entry %d", l.Index)
	}
	switch l.Type {
	case raft.LogCommand:
		_, err = fsm.Decode(l.Data)
	case raft.LogConfiguration:
		defer func() { // raft's decoder panics on what it cannot decode
			if r := recover(); r != nil {
				err = fmt.Errorf("configuration: %v", r)
			}
		}()
		raft.DecodeConfiguration(l.Data)
	}
	return err
}

// dropLogBelow empties a monotonic log that ends below the newest
// snapshot (at index snapshot). Raft persists a snapshot it restores or
// installs and then empties such a log (removeOldLogs); a crash between
// the two leaves entries the snapshot covers, and Raft, which numbers the
// next entry after the snapshot, would find every append refused (the
// store takes only the entry after its last), so that a single node could
// never commit again. Raft replays nothing from those entries.
func (n *Node) dropLogBelow(logs raft.LogStore, snapshot uint64, path string) error {
	if m, ok := logs.(raft.MonotonicLogStore); !ok || !m.IsMonotonic() {
		return nil // gaps are allowed: raft appends after the snapshot
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("node: %s: first index: %w", path, err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("node: %s: last index: %w", path, err)
	}
	if last == 0 || last >= snapshot {
		return nil
	}
	n.cfg.Logger.Warn("log store: the log ends below the newest snapshot (a crash interrupted its removal after a restore or a snapshot install): removing it",
		"file", path, "first", first, "last", last, "snapshot", snapshot)
	if err := logs.DeleteRange(first, last); err != nil {
		return fmt.Errorf("node: %s: remove the log below the snapshot: %w", path, err)
	}
	return nil
}

// newestSnapshot shows Raft only the newest snapshot. As it starts, Raft
// restores the newest one that restores, silently falling back to older
// ones, and then panics if the log does not reach back that far; the node
// would rather fail (checkSnapshots has checked the newest already). Raft
// uses only the newest otherwise.
type newestSnapshot struct{ raft.SnapshotStore }

func (s newestSnapshot) List() ([]*raft.SnapshotMeta, error) {
	metas, err := s.SnapshotStore.List()
	if len(metas) > 1 {
		metas = metas[:1]
	}
	return metas, err
}
