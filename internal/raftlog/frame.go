package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/hashicorp/raft"
)

const (
	magic = 0x676c4c51 // "QLlg", little endian

	// headerLen is magic(4) crc(4) bodyLen(4) batchFirst(8).
	headerLen = 20
	// fixedBody is index(8) term(8) type(1) appendedAt(8) dataLen(4).
	fixedBody = 29

	// MaxEntry bounds a frame's body: what a length field above it says
	// is damage, never an allocation.
	MaxEntry = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errFrame = errors.New("damaged frame")

// appendFrame appends l's frame to buf; batchFirst is the index of the
// first entry of the StoreLogs call writing it.
func appendFrame(buf []byte, l *raft.Log, batchFirst uint64) ([]byte, error) {
	bodyLen := fixedBody + len(l.Data) + len(l.Extensions)
	if bodyLen > MaxEntry {
		return buf, fmt.Errorf("raftlog: entry %d of %d bytes, above %d", l.Index, bodyLen, MaxEntry)
	}
	start := len(buf)
	le := binary.LittleEndian
	buf = le.AppendUint32(buf, magic)
	buf = le.AppendUint32(buf, 0) // the CRC, below
	buf = le.AppendUint32(buf, uint32(bodyLen))
	buf = le.AppendUint64(buf, batchFirst)
	buf = le.AppendUint64(buf, l.Index)
	buf = le.AppendUint64(buf, l.Term)
	buf = append(buf, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	buf = le.AppendUint64(buf, uint64(at))
	buf = le.AppendUint32(buf, uint32(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = append(buf, l.Extensions...)
	le.PutUint32(buf[start+4:], crc32.Checksum(buf[start+8:], castagnoli))
	return buf, nil
}

// frame is one decoded frame.
type frame struct {
	size       int // header and body
	batchFirst uint64
	log        raft.Log
}

// parseFrame decodes the frame at the start of b, which may run on past
// it. Any damage is errFrame, with what is wrong.
func parseFrame(b []byte) (frame, error) {
	le := binary.LittleEndian
	if len(b) < headerLen {
		return frame{}, fmt.Errorf("%w: %d bytes left, a header is %d", errFrame, len(b), headerLen)
	}
	if m := le.Uint32(b); m != magic {
		return frame{}, fmt.Errorf("%w: magic %#x", errFrame, m)
	}
	bodyLen := int(le.Uint32(b[8:]))
	if bodyLen < fixedBody || bodyLen > MaxEntry {
		return frame{}, fmt.Errorf("%w: body of %d bytes", errFrame, bodyLen)
	}
	if len(b) < headerLen+bodyLen {
		return frame{}, fmt.Errorf("%w: body of %d bytes, %d left", errFrame, bodyLen, len(b)-headerLen)
	}
	b = b[:headerLen+bodyLen]
	if sum := crc32.Checksum(b[8:], castagnoli); sum != le.Uint32(b[4:]) {
		return frame{}, fmt.Errorf("%w: CRC mismatch", errFrame)
	}
	body := b[headerLen:]
	dataLen := int(le.Uint32(body[25:]))
	if dataLen > bodyLen-fixedBody {
		return frame{}, fmt.Errorf("%w: data of %d bytes in a body of %d", errFrame, dataLen, bodyLen)
	}
	f := frame{size: len(b), batchFirst: le.Uint64(b[12:])}
	f.log = raft.Log{
		Index: le.Uint64(body),
		Term:  le.Uint64(body[8:]),
		Type:  raft.LogType(body[16]),
	}
	if at := int64(le.Uint64(body[17:])); at != 0 {
		f.log.AppendedAt = time.Unix(0, at)
	}
	rest := body[fixedBody:]
	if dataLen > 0 {
		f.log.Data = append([]byte(nil), rest[:dataLen]...)
	}
	if ext := rest[dataLen:]; len(ext) > 0 {
		f.log.Extensions = append([]byte(nil), ext...)
	}
	return f, nil
}
