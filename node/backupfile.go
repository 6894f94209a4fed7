package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/quorumlock/quorumlock/fsm"
)

// The backup file (DESIGN.md, "Backup and restore"): a header of
// backupHeaderLen bytes, then the fsm snapshot of backupLen bytes.
//
//	0  magic "QLBACKUP"
//	8  version (uint32)
//	12 index (uint64): no token, generation or claim of the state is above it
//	20 term (uint64)
//	28 length of the body (uint64)
//	36 SHA-256 of bytes 0–35 followed by the body
//	68 body
const (
	backupMagic     = "QLBACKUP"
	backupVersion   = 1
	backupSumAt     = 36
	backupHeaderLen = backupSumAt + sha256.Size
)

// backup is a verified backup file.
type backup struct {
	index, term uint64
	body        []byte     // the fsm snapshot
	state       *fsm.State // the body, restored
}

// encodeBackup returns the backup file of body, an fsm snapshot of the
// state at index (in term).
func encodeBackup(index, term uint64, body []byte) []byte {
	out := make([]byte, backupHeaderLen, backupHeaderLen+len(body))
	copy(out, backupMagic)
	binary.BigEndian.PutUint32(out[8:], backupVersion)
	binary.BigEndian.PutUint64(out[12:], index)
	binary.BigEndian.PutUint64(out[20:], term)
	binary.BigEndian.PutUint64(out[28:], uint64(len(body)))
	sum := backupSum(out[:backupSumAt], body)
	copy(out[backupSumAt:], sum[:])
	return append(out, body...)
}

func backupSum(header, body []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(header)
	h.Write(body)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// readBackup reads a backup file to its end and verifies all of it: the
// magic, the version, the length, nothing after the body, the checksum,
// the body as an fsm snapshot, and no index in the state above the
// header's. A backup that fails any check is refused with an error wrapping
// fsm.ErrCorrupt (and fsm.ErrSnapshotVersion for a later format); an error
// of r is returned as such. It allocates as the body arrives, never the
// header's length up front.
func readBackup(r io.Reader) (*backup, error) {
	header := make([]byte, backupHeaderLen)
	if n, err := io.ReadFull(r, header); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, corrupt("truncated header: %d of %d bytes", n, backupHeaderLen)
		}
		return nil, fmt.Errorf("node: read backup: %w", err)
	}
	if string(header[:8]) != backupMagic {
		return nil, corrupt("no backup of this product (magic %q)", header[:8])
	}
	switch v := binary.BigEndian.Uint32(header[8:]); {
	case v > backupVersion:
		return nil, fmt.Errorf("%w: %w: backup format %d (this build reads %d)", fsm.ErrCorrupt, fsm.ErrSnapshotVersion, v, backupVersion)
	case v != backupVersion:
		return nil, corrupt("format version %d", v)
	}
	b := &backup{index: binary.BigEndian.Uint64(header[12:]), term: binary.BigEndian.Uint64(header[20:])}
	length := binary.BigEndian.Uint64(header[28:])
	if length > math.MaxInt64 {
		return nil, corrupt("body length %d", length)
	}
	var body bytes.Buffer
	if n, err := io.CopyN(&body, r, int64(length)); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, corrupt("truncated body: %d of %d bytes", n, length)
		}
		return nil, fmt.Errorf("node: read backup: %w", err)
	}
	switch n, err := io.ReadFull(r, make([]byte, 1)); {
	case n > 0:
		return nil, corrupt("bytes after the body of %d bytes", length)
	case !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("node: read backup: %w", err)
	}
	b.body = body.Bytes()
	if sum := backupSum(header[:backupSumAt], b.body); !bytes.Equal(sum[:], header[backupSumAt:]) {
		return nil, corrupt("checksum mismatch")
	}
	st, err := fsm.Restore(b.body)
	if err != nil {
		return nil, fmt.Errorf("%w: backup body: %w", fsm.ErrCorrupt, err)
	}
	if err := checkIndexes(st, b.index); err != nil {
		return nil, err
	}
	b.state = st
	return b, nil
}

// corrupt is readBackup's error for a malformed backup.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: backup: %s", fsm.ErrCorrupt, fmt.Sprintf(format, args...))
}

// checkIndexes refuses a backup state that records a log index above the
// backup's index (a generation or a claim), or a token above both that
// index and the state's token floor: every later grant's token must be
// above every token it holds (I2). A floored token is above the index,
// and the floor is then at least that token (fsm, "Protocol 4" and "5").
func checkIndexes(st *fsm.State, index uint64) error {
	top, token := highest(st)
	switch {
	case top > index:
		return corrupt("the state holds index %d, above the backup's index %d", top, index)
	case token > max(index, st.TokenFloor()):
		return corrupt("the state holds token %d, above the backup's index %d and its token floor %d", token, index, st.TokenFloor())
	}
	return nil
}

// highest is the highest log index st records (a generation or a claim,
// of every holder and waiter) and its highest token.
func highest(st *fsm.State) (index, token uint64) {
	for _, li := range st.List("", "", 0) { // every name has a holder
		for _, h := range li.Leases() { // every holder: a semaphore has many
			index, token = max(index, h.Generation, h.Claim), max(token, h.Token)
		}
		for _, c := range st.Queue(li.Name, 0) {
			index = max(index, c.Claim)
		}
	}
	return index, token
}
