package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/hashicorp/raft"
)

// The layout of a segment: a segment header, written and synced when the
// file is made, then calls, one per StoreLogs, each a call header and the
// frames of its entries.
//
//	segment      magic "QLsg" | crc | first index
//	call header  magic "QLcl" | crc | length of its frames | count | first index
//	frame        magic "QLlg" | crc | body length | body
//	body         index | term | type | appended at | data length | data | extensions
//
// Every crc is CRC-32C seeded with the directory's salt, a random number
// drawn when the store was made and kept in its stable file: bytes a
// client put into an entry cannot pass for a header or a frame of this
// directory without it.
const (
	segMagic  = 0x67734c51 // "QLsg", little endian
	callMagic = 0x6c634c51 // "QLcl", little endian
	magic     = 0x676c4c51 // "QLlg", little endian

	// segHeaderLen is magic(4) crc(4) first(8).
	segHeaderLen = 16
	// callHeaderLen is magic(4) crc(4) length(4) count(4) first(8).
	callHeaderLen = 24
	// headerLen is magic(4) crc(4) bodyLen(4).
	headerLen = 12
	// fixedBody is index(8) term(8) type(1) appendedAt(8) dataLen(4).
	fixedBody = 29

	// MaxEntry bounds a frame's body: what a length field above it says
	// is damage, never an allocation.
	MaxEntry = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(salt uint32, b []byte) uint32 { return crc32.Update(salt, castagnoli, b) }

var errFrame = errors.New("damaged frame")

// segHeader returns the header of a segment whose first entry is base.
func segHeader(base uint64, salt uint32) []byte {
	le := binary.LittleEndian
	h := le.AppendUint32(nil, segMagic)
	h = le.AppendUint32(h, 0)
	h = le.AppendUint64(h, base)
	le.PutUint32(h[4:], checksum(salt, h[8:]))
	return h
}

// checkSegHeader checks the segment header at the start of b: intact under
// salt, and naming base.
func checkSegHeader(b []byte, base uint64, salt uint32) error {
	le := binary.LittleEndian
	switch {
	case len(b) < segHeaderLen:
		return fmt.Errorf("%w: %d bytes, a segment header is %d", errFrame, len(b), segHeaderLen)
	case le.Uint32(b) != segMagic:
		return fmt.Errorf("%w: segment magic %#x", errFrame, le.Uint32(b))
	case checksum(salt, b[8:segHeaderLen]) != le.Uint32(b[4:]):
		return fmt.Errorf("%w: segment header CRC mismatch (damaged, or the stable file is another store's)", errFrame)
	case le.Uint64(b[8:]) != base:
		return fmt.Errorf("%w: the segment header says entry %d", errFrame, le.Uint64(b[8:]))
	}
	return nil
}

// appendCall appends the call header and frames of logs, which the caller
// checked are consecutive, to buf, and the offset in buf of each frame to
// rel.
func appendCall(buf []byte, rel []int64, logs []*raft.Log, salt uint32) ([]byte, []int64, error) {
	le := binary.LittleEndian
	start := len(buf)
	buf = append(buf, make([]byte, callHeaderLen)...)
	for _, l := range logs {
		rel = append(rel, int64(len(buf)))
		var err error
		if buf, err = appendFrame(buf, l, salt); err != nil {
			return buf, rel, err
		}
	}
	h := buf[start : start+callHeaderLen]
	le.PutUint32(h, callMagic)
	le.PutUint32(h[8:], uint32(len(buf)-start-callHeaderLen))
	le.PutUint32(h[12:], uint32(len(logs)))
	le.PutUint64(h[16:], logs[0].Index)
	le.PutUint32(h[4:], checksum(salt, h[8:]))
	return buf, rel, nil
}

// call is a decoded call header.
type call struct {
	length int // of its frames, in bytes
	count  int
	first  uint64
}

// parseCall decodes the call header at the start of b.
func parseCall(b []byte, salt uint32) (call, error) {
	le := binary.LittleEndian
	if len(b) < callHeaderLen {
		return call{}, fmt.Errorf("%w: %d bytes left, a call header is %d", errFrame, len(b), callHeaderLen)
	}
	if m := le.Uint32(b); m != callMagic {
		return call{}, fmt.Errorf("%w: call magic %#x", errFrame, m)
	}
	if sum := checksum(salt, b[8:callHeaderLen]); sum != le.Uint32(b[4:]) {
		return call{}, fmt.Errorf("%w: call header CRC mismatch", errFrame)
	}
	c := call{length: int(le.Uint32(b[8:])), count: int(le.Uint32(b[12:])), first: le.Uint64(b[16:])}
	if c.count == 0 || c.length < c.count*(headerLen+fixedBody) {
		return call{}, fmt.Errorf("%w: a call of %d entries in %d bytes", errFrame, c.count, c.length)
	}
	return c, nil
}

// appendFrame appends l's frame to buf.
func appendFrame(buf []byte, l *raft.Log, salt uint32) ([]byte, error) {
	bodyLen := fixedBody + len(l.Data) + len(l.Extensions)
	if bodyLen > MaxEntry {
		return buf, fmt.Errorf("raftlog: entry %d of %d bytes, above %d", l.Index, bodyLen, MaxEntry)
	}
	start := len(buf)
	le := binary.LittleEndian
	buf = le.AppendUint32(buf, magic)
	buf = le.AppendUint32(buf, 0) // the CRC, below
	buf = le.AppendUint32(buf, uint32(bodyLen))
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
	le.PutUint32(buf[start+4:], checksum(salt, buf[start+8:]))
	return buf, nil
}

// frame is one decoded frame.
type frame struct {
	size int // header and body
	log  raft.Log
}

// parseFrame decodes the frame at the start of b, which may run on past
// it. Any damage is errFrame, with what is wrong.
func parseFrame(b []byte, salt uint32) (frame, error) {
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
	if sum := checksum(salt, b[8:]); sum != le.Uint32(b[4:]) {
		return frame{}, fmt.Errorf("%w: CRC mismatch", errFrame)
	}
	body := b[headerLen:]
	dataLen := int(le.Uint32(body[25:]))
	if dataLen > bodyLen-fixedBody {
		return frame{}, fmt.Errorf("%w: data of %d bytes in a body of %d", errFrame, dataLen, bodyLen)
	}
	f := frame{size: len(b)}
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
