package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

var updateBackupSeeds = flag.Bool("update-backup-seeds", false, "rewrite the seeds of testdata/fuzz/FuzzReadBackup")

// backupState is a small state: session 11 holds db (token 3) with
// session 22 queued behind it (claim 4), and session 22 holds report, a
// TTL lease (token 5). Its highest index is 5.
func backupState(t testing.TB) []byte {
	t.Helper()
	st := fsm.New()
	rq := func(session, seq uint64) *fsmpb.Request { return &fsmpb.Request{Session: session, Seq: seq} }
	cmds := []*fsmpb.Command{
		{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{Req: rq(11, 1), TtlNs: int64(2 * time.Second), Node: "n1"}}},
		{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{Req: rq(22, 1), TtlNs: int64(2 * time.Second), Node: "n2"}}},
		{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{Req: rq(11, 2), Name: "db", Owner: "alice"}}},
		{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{Req: rq(22, 2), Name: "db", Owner: "carol"}}},
		{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{Req: rq(22, 3), Name: "report", Owner: "bob", TtlNs: int64(time.Hour)}}},
	}
	for i, cmd := range cmds {
		_, _, err := st.Apply(uint64(i+1), cmd)
		require.NoError(t, err)
	}
	body, err := st.Snapshot()
	require.NoError(t, err)
	return body
}

// reseal recomputes the checksum of backup b after a test edited its
// header or body, so that only the edit is wrong.
func reseal(b []byte) []byte {
	out := bytes.Clone(b)
	h := sha256.New()
	h.Write(out[:backupSumAt])
	h.Write(out[backupHeaderLen:])
	copy(out[backupSumAt:backupHeaderLen], h.Sum(nil))
	return out
}

func TestBackupFile_RoundTrip(t *testing.T) {
	body := backupState(t)
	enc := encodeBackup(7, 2, body)
	require.Len(t, enc, backupHeaderLen+len(body))
	require.Equal(t, "QLBACKUP", string(enc[:8]))
	b, err := readBackup(bytes.NewReader(enc))
	require.NoError(t, err)
	assert.Equal(t, uint64(7), b.index)
	assert.Equal(t, uint64(2), b.term)
	assert.Equal(t, body, b.body)
	db := b.state.Lock("db")
	assert.Equal(t, uint64(3), db.Token)
	assert.Equal(t, 1, db.Waiters)
	assert.Equal(t, "bob", b.state.Lock("report").Owner)

	_, err = readBackup(bytes.NewReader(encodeBackup(5, 2, body)))
	require.NoError(t, err, "the index may equal the highest token")
}

// TestBackupFile_Damage: every truncation and every flipped byte of a
// backup is refused with fsm.ErrCorrupt, as are bytes after the body.
func TestBackupFile_Damage(t *testing.T) {
	enc := encodeBackup(7, 2, backupState(t))
	for n := range len(enc) {
		_, err := readBackup(bytes.NewReader(enc[:n]))
		require.ErrorIs(t, err, fsm.ErrCorrupt, "cut to %d bytes", n)
	}
	for i := range enc {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(enc)
			b[i] ^= mask
			_, err := readBackup(bytes.NewReader(b))
			require.ErrorIs(t, err, fsm.ErrCorrupt, "byte %d ^ %#x", i, mask)
		}
	}
	_, err := readBackup(bytes.NewReader(append(bytes.Clone(enc), 0)))
	require.ErrorIs(t, err, fsm.ErrCorrupt, "a byte after the body")
}

// TestBackupFile_Refused: headers and bodies that are wrong although their
// checksum matches.
func TestBackupFile_Refused(t *testing.T) {
	body := backupState(t)
	enc := encodeBackup(7, 2, body)
	edit := func(fn func(b []byte) []byte) []byte { return reseal(fn(bytes.Clone(enc))) }
	cases := map[string]struct {
		backup []byte
		also   error // wrapped besides fsm.ErrCorrupt
	}{
		"wrong magic": {backup: edit(func(b []byte) []byte { copy(b, "QLBACKUQ"); return b })},
		"version 0":   {backup: edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 0); return b })},
		"version 2": {
			backup: edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], backupVersion+1); return b }),
			also:   fsm.ErrSnapshotVersion,
		},
		"index below a token": {backup: edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[12:], 4); return b })},
		"length short":        {backup: edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[28:], uint64(len(body)-1)); return b })},
		"length huge":         {backup: edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[28:], 1<<62); return b })},
		"length over int64":   {backup: edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[28:], math.MaxUint64); return b })},
		"body not a snapshot": {backup: encodeBackup(7, 2, []byte("not a snapshot"))},
		"empty body":          {backup: encodeBackup(7, 2, nil)},
		"body of a later fsm format": {
			backup: encodeBackup(7, 2, func() []byte {
				b, err := proto.Marshal(&fsmpb.Snapshot{Version: fsm.SnapshotVersion + 1})
				require.NoError(t, err)
				return b
			}()),
			also: fsm.ErrSnapshotVersion,
		},
	}
	for name, tc := range cases {
		_, err := readBackup(bytes.NewReader(tc.backup))
		require.ErrorIs(t, err, fsm.ErrCorrupt, name)
		if tc.also != nil {
			require.ErrorIs(t, err, tc.also, name)
		}
	}
}

// TestBackupFile_ReadError: a reader that fails is reported as such, not
// as a damaged backup.
func TestBackupFile_ReadError(t *testing.T) {
	enc := encodeBackup(7, 2, backupState(t))
	boom := errors.New("disk on fire")
	for _, n := range []int{0, 10, backupHeaderLen, len(enc) - 1, len(enc)} {
		_, err := readBackup(io.MultiReader(bytes.NewReader(enc[:n]), failingReader{boom}))
		require.ErrorIs(t, err, boom, "failing after %d bytes", n)
		require.NotErrorIs(t, err, fsm.ErrCorrupt, "failing after %d bytes", n)
	}
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

// FuzzReadBackup feeds readBackup arbitrary bytes, as a damaged or hostile
// file would. Properties: it never panics; it refuses with an error
// wrapping fsm.ErrCorrupt; what it accepts has a restored state with no
// index above its index, no token above that and its token floor, and
// encodes back to the very same bytes.
//
// Seeds: testdata/fuzz/FuzzReadBackup, written by TestFuzzReadBackup_seeds.
func FuzzReadBackup(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := readBackup(bytes.NewReader(data))
		if err != nil {
			require.ErrorIs(t, err, fsm.ErrCorrupt)
			return
		}
		require.NotNil(t, b.state)
		top, token := highest(b.state)
		require.LessOrEqual(t, top, b.index)
		require.LessOrEqual(t, token, max(b.index, b.state.TokenFloor()))
		require.Equal(t, data, encodeBackup(b.index, b.term, b.body))
	})
}

// TestFuzzReadBackup_seeds: the checked-in seed corpus of FuzzReadBackup
// is what backupSeeds encodes (go test ./node -run FuzzReadBackup_seeds
// -update-backup-seeds rewrites it).
func TestFuzzReadBackup_seeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReadBackup")
	for name, data := range backupSeeds(t) {
		path := filepath.Join(dir, name)
		want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
		if *updateBackupSeeds {
			require.NoError(t, os.MkdirAll(dir, 0o755))
			require.NoError(t, os.WriteFile(path, want, 0o644))
		}
		got, err := os.ReadFile(path)
		require.NoError(t, err, "run go test ./node -run FuzzReadBackup_seeds -update-backup-seeds")
		assert.Equal(t, string(want), string(got), "%s is stale", path)
	}
}

func backupSeeds(t *testing.T) map[string][]byte {
	body := backupState(t)
	valid := encodeBackup(7, 2, body)
	set := func(at int, v uint64) []byte {
		b := bytes.Clone(valid)
		binary.BigEndian.PutUint64(b[at:], v)
		return reseal(b)
	}
	future := bytes.Clone(valid)
	binary.BigEndian.PutUint32(future[8:], backupVersion+1)
	return map[string][]byte{
		"valid":            valid,
		"empty-state":      encodeBackup(1, 1, mustSnapshot(t, fsm.New())),
		"header-only":      valid[:backupHeaderLen],
		"truncated-header": valid[:20],
		"truncated-body":   valid[:len(valid)-3],
		"trailing":         append(bytes.Clone(valid), 'x'),
		"flipped":          flip(valid, backupHeaderLen+5),
		"future-version":   reseal(future),
		"index-too-low":    set(12, 1),
		"length-huge":      set(28, 1<<40),
	}
}

func mustSnapshot(t *testing.T, st *fsm.State) []byte {
	b, err := st.Snapshot()
	require.NoError(t, err)
	return b
}

func flip(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i] ^= 0xff
	return out
}

// TestNode_OpenNewestSnapshot: when Raft has nothing new to snapshot,
// Snapshot reads the newest snapshot of the node's store (openNewest);
// it is the one the last Snapshot made, and makes the same backup. Before
// any snapshot there is none to open.
func TestNode_OpenNewestSnapshot(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{ID: "solo"})
	_, _, err := n.openNewest()
	require.ErrorIs(t, err, errNoSnapshot)
	_, err = n.Acquire(ctx, "held")
	require.NoError(t, err)
	var buf bytes.Buffer
	info, err := n.Snapshot(ctx, &buf)
	require.NoError(t, err)
	meta, frame, err := readFrame(n.openNewest)
	require.NoError(t, err)
	require.Equal(t, info.Index, meta.Index)
	b, err := backupOf(meta, frame)
	require.NoError(t, err)
	assert.Equal(t, buf.Bytes(), b)
}
