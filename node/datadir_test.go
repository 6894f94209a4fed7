package node

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/raftlog"
	"github.com/quorumlock/quorumlock/lock"
)

// TestNew_DamagedDataDir starts a node on a DataDir with one damaged file,
// for each kind of damage: New must fail with ErrCorruptData and name the
// file and what is wrong, never start (with an empty state, or an older
// one) and never panic. What each did before the start-up checks is noted
// per case (node/DESIGN.md, "Durability"). The failed New leaves no file
// open.
func TestNew_DamagedDataDir(t *testing.T) {
	cases := []struct {
		what      string
		format    LogStore // of the DataDir written; LogStoreAuto: LogStoreLog
		snapshots int      // taken while writing the DataDir
		trailing  uint64   // Config.TrailingLogs (1: the log is compacted up to each snapshot)
		damage    func(t *testing.T, dir string) string
		want      string // in the error, besides the file damage returned
	}{{
		// Before: "failed to load any existing snapshots", no file named.
		what: "the only snapshot truncated", snapshots: 1,
		damage: func(t *testing.T, dir string) string {
			return filepath.Dir(truncateHalf(t, filepath.Join(snapshotPaths(t, dir)[0], "state.bin")))
		},
		want: "CRC mismatch",
	}, {
		// Before: raft restored the older snapshot, then panicked in New
		// (log not found): the log no longer reaches back to it.
		what: "the newest snapshot flipped, the log compacted past the older", snapshots: 2, trailing: 1,
		damage: func(t *testing.T, dir string) string {
			return filepath.Dir(flipByte(t, filepath.Join(snapshotPaths(t, dir)[0], "state.bin"), 20))
		},
		want: "CRC mismatch",
	}, {
		// Before: the same panic; raft skips a snapshot whose meta.json
		// does not decode without a word.
		what: "meta.json of the newest snapshot damaged", snapshots: 2, trailing: 1,
		damage: func(t *testing.T, dir string) string {
			return filepath.Dir(flipByte(t, filepath.Join(snapshotPaths(t, dir)[0], "meta.json"), 0))
		},
		want: "meta.json unreadable",
	}, {
		// Before: the same panic.
		what: "the newest snapshot deleted, the log compacted past the older", snapshots: 2, trailing: 1,
		damage: func(t *testing.T, dir string) string {
			require.NoError(t, os.RemoveAll(snapshotPaths(t, dir)[0]))
			return filepath.Join(dir, "log")
		},
		want: "are missing",
	}, {
		// Before: raft fell back to the previous snapshot without a word
		// (with an intact CRC only the fsm can tell); had the log not
		// reached back to it, it would have panicked as above.
		what: "the newest snapshot intact on disk but not a state", snapshots: 2, trailing: 1,
		damage: func(t *testing.T, dir string) string {
			return writeSnapshot(t, dir, []byte("not a state machine snapshot"))
		},
		want: "fsm: corrupt data",
	}, {
		// Before: bbolt made a new database and the node started empty.
		what: "raft.db truncated to nothing", format: LogStoreBolt,
		damage: func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "raft.db")
			require.NoError(t, os.Truncate(path, 0))
			return path
		},
		want: "is empty",
	}, {
		// Before: the node started from the snapshot alone, its log and
		// vote gone.
		what: "raft.db deleted beside a snapshot", format: LogStoreBolt, snapshots: 1,
		damage: func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "raft.db")
			require.NoError(t, os.Remove(path))
			return path
		},
		want: "are missing",
	}, {
		// Before: SIGBUS, the process killed.
		what: "raft.db cut in half", format: LogStoreBolt,
		damage: func(t *testing.T, dir string) string {
			return truncateHalf(t, filepath.Join(dir, "raft.db"))
		},
		want: "cut short",
	}, {
		// Before: bbolt's assertion panicked in New.
		what: "raft.db's root page naming another page", format: LogStoreBolt,
		damage: func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "raft.db")
			pageSize, root := boltRoot(t, path)
			return flipByte(t, path, int64(root*pageSize))
		},
		want: "identifies itself",
	}, {
		// Before: the replay reached it and the bridge panicked on Raft's
		// FSM goroutine, killing the process.
		what: "a command in raft.db that does not decode", format: LogStoreBolt,
		damage: func(t *testing.T, dir string) string {
			return appendEntry(t, dir, LogStoreBolt, raft.Log{Type: raft.LogCommand, Data: []byte{0xff, 0xff}})
		},
		want: "fsm: corrupt data: command",
	}, {
		what: "a command in log/ that does not decode",
		damage: func(t *testing.T, dir string) string {
			return appendEntry(t, dir, LogStoreLog, raft.Log{Type: raft.LogCommand, Data: []byte{0xff, 0xff}})
		},
		want: "fsm: corrupt data: command",
	}, {
		what: "log/ deleted beside a snapshot", snapshots: 1,
		damage: func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "log")
			require.NoError(t, os.RemoveAll(path))
			return path
		},
		want: "are missing",
	}, {
		what: "log/'s stable file (term and vote) deleted",
		damage: func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "log", "stable")
			require.NoError(t, os.Remove(path))
			return path
		},
		want: "is missing",
	}, {
		// The node started from the snapshot alone, its log, term and
		// vote gone: the store wrote a new stable file into the empty
		// directory.
		what: "log/ emptied beside a snapshot", snapshots: 1,
		damage: func(t *testing.T, dir string) string {
			entries, err := os.ReadDir(filepath.Join(dir, "log"))
			require.NoError(t, err)
			for _, e := range entries {
				require.NoError(t, os.Remove(filepath.Join(dir, "log", e.Name())))
			}
			return filepath.Join(dir, "log", "stable")
		},
		want: "is missing",
	}, {
		what: "an entry in log/ damaged, later writes after it",
		damage: func(t *testing.T, dir string) string {
			segs, err := filepath.Glob(filepath.Join(dir, "log", "*.seg"))
			require.NoError(t, err)
			require.NotEmpty(t, segs)
			return flipByte(t, segs[0], 40) // inside the body of the first entry
		},
		want: "a later call was written after it",
	}, {
		what: "both raft.db and log/",
		damage: func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "raft.db")
			require.NoError(t, os.WriteFile(path, []byte("x"), 0o600))
			return path
		},
		want: "both exist",
	}}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			dir := t.TempDir()
			writeDataDir(t, dir, c.format, c.snapshots, c.trailing)
			file := c.damage(t, dir)
			n, err := New(Config{DataDir: dir})
			if err == nil {
				info, _ := n.Inspect(testCtx(t), "kept")
				_ = n.Close()
				t.Fatalf("the node started on the damaged DataDir (lock %q: %+v)", "kept", info)
			}
			require.ErrorIs(t, err, ErrCorruptData)
			assert.Contains(t, err.Error(), file)
			assert.Contains(t, err.Error(), c.want)
			assert.NoError(t, noFileOpenUnder(dir), "the failed New closed what it opened")
			n, err = New(Config{DataDir: dir})
			if err == nil {
				_ = n.Close()
			}
			require.ErrorIs(t, err, ErrCorruptData, "a second New: the failed one repaired nothing on its way")
		})
	}
}

// TestNew_DataDirChecksPassHealthyState: the checks refuse damage only. An
// intact DataDir (log compacted up to two snapshots, an unfinished
// snapshot's directory left behind) starts with its state; so does one
// whose damaged newest snapshot the operator moved aside while the log
// still reaches back to the older one, as the error advises.
func TestNew_DataDirChecksPassHealthyState(t *testing.T) {
	ctx := testCtx(t)
	requireKept := func(dir string, token uint64) {
		t.Helper()
		n := newNode(t, Config{DataDir: dir})
		info, err := n.Inspect(ctx, "kept")
		require.NoError(t, err)
		assert.True(t, info.Held)
		assert.Equal(t, token, info.Token)
		require.NoError(t, n.Close())
	}

	intact := t.TempDir()
	token := writeDataDir(t, intact, LogStoreAuto, 2, 1)
	require.NoError(t, os.Mkdir(filepath.Join(intact, "snapshots", "1-99-123"+tmpSuffix), 0o700))
	requireKept(intact, token)

	movedAside := t.TempDir()
	token = writeDataDir(t, movedAside, LogStoreAuto, 2, 0)
	newest := snapshotPaths(t, movedAside)[0]
	flipByte(t, filepath.Join(newest, "state.bin"), 20)
	_, err := New(Config{DataDir: movedAside})
	require.ErrorIs(t, err, ErrCorruptData)
	require.NoError(t, os.Rename(newest, filepath.Join(t.TempDir(), "damaged")))
	requireKept(movedAside, token)
}

// TestNewestSnapshot_ListsOnlyTheNewest: Raft, shown two snapshots, sees
// only the newer one, so it cannot fall back to the older as it starts.
func TestNewestSnapshot_ListsOnlyTheNewest(t *testing.T) {
	dir := t.TempDir()
	writeDataDir(t, dir, LogStoreAuto, 2, 0)
	store, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	require.NoError(t, err)
	all, err := store.List()
	require.NoError(t, err)
	require.Len(t, all, 2)
	shown, err := newestSnapshot{store}.List()
	require.NoError(t, err)
	require.Len(t, shown, 1)
	assert.Equal(t, all[0].ID, shown[0].ID)
	assert.Greater(t, shown[0].Index, all[1].Index)
}

// writeDataDir runs a node on dir, its log in format, that takes a TTL
// lease on "kept" (which outlives the node) and snapshots times with
// commands between and after them, then crashes it. It returns the
// lease's token.
func writeDataDir(t *testing.T, dir string, format LogStore, snapshots int, trailing uint64) uint64 {
	t.Helper()
	ctx := testCtx(t)
	n, err := New(Config{DataDir: dir, LogStore: format, TrailingLogs: trailing})
	require.NoError(t, err)
	kept, err := n.Acquire(ctx, "kept", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	churn := func() {
		for range 5 {
			l, err := n.Acquire(ctx, "churn")
			require.NoError(t, err)
			require.NoError(t, l.Release(ctx))
		}
	}
	for range snapshots {
		churn()
		require.NoError(t, n.raft.Snapshot().Error())
	}
	churn()
	require.NoError(t, n.Abort())
	return kept.Token()
}

// snapshotPaths lists dir's snapshot directories, newest first.
func snapshotPaths(t *testing.T, dir string) []string {
	t.Helper()
	store, err := raft.NewFileSnapshotStore(dir, 100, io.Discard)
	require.NoError(t, err)
	metas, err := store.List()
	require.NoError(t, err)
	require.NotEmpty(t, metas)
	var paths []string
	for _, m := range metas {
		paths = append(paths, filepath.Join(dir, "snapshots", m.ID))
	}
	return paths
}

// writeSnapshot stores data as a new newest snapshot of dir, as raft would
// (its CRC intact), and returns its directory.
func writeSnapshot(t *testing.T, dir string, data []byte) string {
	t.Helper()
	store, err := raft.NewFileSnapshotStore(dir, 100, io.Discard)
	require.NoError(t, err)
	metas, err := store.List()
	require.NoError(t, err)
	newest := metas[0]
	_, trans := raft.NewInmemTransport("")
	defer func() { require.NoError(t, trans.Close()) }()
	sink, err := store.Create(raft.SnapshotVersionMax, newest.Index+1, newest.Term, newest.Configuration, newest.ConfigurationIndex, trans)
	require.NoError(t, err)
	_, err = sink.Write(data)
	require.NoError(t, err)
	require.NoError(t, sink.Close())
	return filepath.Join(dir, "snapshots", sink.ID())
}

// appendEntry appends l to dir's log, in format, as the entry after its
// last one, and returns the log's path.
func appendEntry(t *testing.T, dir string, format LogStore, l raft.Log) string {
	t.Helper()
	var store interface {
		raft.LogStore
		Close() error
	}
	path := filepath.Join(dir, "log")
	if format == LogStoreBolt {
		path = filepath.Join(dir, "raft.db")
		bolt, err := raftboltdb.NewBoltStore(path)
		require.NoError(t, err)
		store = bolt
	} else {
		segs, err := raftlog.Open(path, raftlog.Options{})
		require.NoError(t, err)
		store = segs
	}
	defer func() { require.NoError(t, store.Close()) }()
	last, err := store.LastIndex()
	require.NoError(t, err)
	var prev raft.Log
	require.NoError(t, store.GetLog(last, &prev))
	l.Index, l.Term = last+1, prev.Term
	require.NoError(t, store.StoreLog(&l))
	return path
}

// boltRoot reads the page size and the root page of the bbolt file at path
// from its newer meta page (bbolt's layout: the meta follows the 16-byte
// page header; page size at 8, root page at 16, transaction ID at 48).
func boltRoot(t *testing.T, path string) (pageSize, root uint64) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	ne := binary.NativeEndian
	pageSize = uint64(ne.Uint32(b[16+8:]))
	m := b[16:]
	if m1 := b[pageSize+16:]; ne.Uint64(m1[48:]) > ne.Uint64(m[48:]) {
		m = m1
	}
	return pageSize, ne.Uint64(m[16:])
}

func truncateHalf(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, fi.Size()/2))
	return path
}

func flipByte(t *testing.T, path string, off int64) string {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer func() { require.NoError(t, f.Close()) }()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
	return path
}

// TestNew_TornLogTail: a write a crash cut short at the end of log/ is
// cut off at start-up and logged at Warn, and the node starts with
// everything before it.
func TestNew_TornLogTail(t *testing.T) {
	dir := t.TempDir()
	token := writeDataDir(t, dir, LogStoreAuto, 0, 0)
	segs, err := filepath.Glob(filepath.Join(dir, "log", "*.seg"))
	require.NoError(t, err)
	last := segs[len(segs)-1]
	fi, err := os.Stat(last)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(last, fi.Size()-5))

	var logs syncBuffer
	n := newNode(t, Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	info, err := n.Inspect(testCtx(t), "kept")
	require.NoError(t, err)
	assert.True(t, info.Held)
	assert.Equal(t, token, info.Token)
	require.NoError(t, n.Close())
	assert.Contains(t, logs.String(), "level=WARN msg=\"log store: cut the torn tail")
	assert.Contains(t, logs.String(), last)
}

// TestNew_LogStoreFormat: a new DataDir gets the format asked for
// (LogStoreLog by default); an existing one keeps its own under
// LogStoreAuto and refuses the other by name.
func TestNew_LogStoreFormat(t *testing.T) {
	for _, c := range []struct {
		made, other LogStore
		file        string
	}{{LogStoreAuto, LogStoreBolt, "log"}, {LogStoreBolt, LogStoreLog, "raft.db"}} {
		t.Run(c.file, func(t *testing.T) {
			dir := t.TempDir()
			token := writeDataDir(t, dir, c.made, 0, 0)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			assert.ElementsMatch(t, []string{c.file, "snapshots"}, names)

			_, err = New(Config{DataDir: dir, LogStore: c.other})
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), c.other.String())
			assert.NoError(t, noFileOpenUnder(dir))

			n := newNode(t, Config{DataDir: dir})
			info, err := n.Inspect(testCtx(t), "kept")
			require.NoError(t, err)
			assert.Equal(t, token, info.Token)
			require.NoError(t, n.Close())
			_, err = os.Stat(filepath.Join(dir, map[string]string{"log": "raft.db", "raft.db": "log"}[c.file]))
			require.ErrorIs(t, err, os.ErrNotExist, "the other format was not created")
		})
	}
	_, err := New(Config{DataDir: t.TempDir(), LogStore: LogStoreBolt + 1})
	require.ErrorIs(t, err, ErrInvalidConfig)
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
