package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Protocol bytes: the first byte of a connection (inside TLS when TLS is
// on) selects the protocol. Neither is 0x16 (a TLS ClientHello) nor an HTTP
// method's first letter.
const (
	muxRaft byte = 'R'
	muxRPC  byte = 'Q' // RPC protocol v1; an incompatible v2 gets a new byte
)

// RPC frame kinds (see DESIGN.md for directions and bodies).
const (
	kindRequest  byte = 1 // c→s: u64 timeout ns, payload
	kindResponse byte = 2 // s→c: reply
	kindError    byte = 3 // s→c: handler error message
	kindCancel   byte = 4 // c→s: caller gave up
	kindBusy     byte = 5 // s→c: MaxInFlightPerConn reached
	kindTooLarge byte = 6 // s→c: reply over the cap
)

const (
	lenFieldLen      = 4                         // u32 length of the rest
	frameMinLen      = 1 + 8                     // kind + request ID
	headerLen        = lenFieldLen + frameMinLen // 13
	requestPrefixLen = 8                         // u64 timeout in a request body
)

// frame is one decoded RPC frame.
type frame struct {
	kind byte
	id   uint64
	body []byte
}

// encodeFrame returns the wire bytes of a frame.
func encodeFrame(kind byte, id uint64, body []byte) []byte {
	b := make([]byte, headerLen, headerLen+len(body))
	putHeader(b, kind, id, len(body))
	return append(b, body...)
}

// encodeRequest builds a whole request frame in one allocation.
func encodeRequest(id uint64, timeout time.Duration, payload []byte) []byte {
	b := make([]byte, headerLen+requestPrefixLen, headerLen+requestPrefixLen+len(payload))
	putHeader(b, kindRequest, id, requestPrefixLen+len(payload))
	binary.BigEndian.PutUint64(b[headerLen:], uint64(max(timeout, 0)))
	return append(b, payload...)
}

// encodeRequestBody is a request frame's body: timeout, then payload.
func encodeRequestBody(timeout time.Duration, payload []byte) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, requestPrefixLen+len(payload)), uint64(max(timeout, 0)))
	return append(b, payload...)
}

func putHeader(b []byte, kind byte, id uint64, bodyLen int) {
	binary.BigEndian.PutUint32(b, uint32(frameMinLen+bodyLen))
	b[lenFieldLen] = kind
	binary.BigEndian.PutUint64(b[lenFieldLen+1:], id)
}

// frameLenBuffered reports the total wire length of the next frame if its
// length field is already buffered, else -1.
func frameLenBuffered(r *bufio.Reader) int {
	if r.Buffered() < lenFieldLen {
		return -1
	}
	b, err := r.Peek(lenFieldLen)
	if err != nil {
		return -1
	}
	return lenFieldLen + int(binary.BigEndian.Uint32(b))
}

// readFrame reads one frame whose length (bytes after the length field)
// must not exceed maxLen. It returns io.EOF only when r ends cleanly
// before a frame; io.ErrUnexpectedEOF inside one; ErrFrameTooLarge before
// reading or allocating an oversize body; ErrProtocol for a length below
// the header or an unknown kind.
func readFrame(r *bufio.Reader, maxLen int) (frame, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:lenFieldLen]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:lenFieldLen])
	if uint64(n) > uint64(maxLen) {
		return frame{}, fmt.Errorf("%w: %d bytes, cap %d", ErrFrameTooLarge, n, maxLen)
	}
	if n < frameMinLen {
		return frame{}, fmt.Errorf("%w: frame length %d below the %d-byte header", ErrProtocol, n, frameMinLen)
	}
	if _, err := io.ReadFull(r, hdr[lenFieldLen:]); err != nil {
		return frame{}, unexpected(err)
	}
	f := frame{kind: hdr[lenFieldLen], id: binary.BigEndian.Uint64(hdr[lenFieldLen+1:])}
	if f.kind < kindRequest || f.kind > kindTooLarge {
		return frame{}, fmt.Errorf("%w: unknown frame kind %d", ErrProtocol, f.kind)
	}
	if n > frameMinLen {
		f.body = make([]byte, n-frameMinLen)
		if _, err := io.ReadFull(r, f.body); err != nil {
			return frame{}, unexpected(err)
		}
	}
	return f, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseRequest splits a request body into its timeout and payload.
func parseRequest(body []byte) (time.Duration, []byte, error) {
	if len(body) < requestPrefixLen {
		return 0, nil, fmt.Errorf("%w: request body of %d bytes has no timeout", ErrProtocol, len(body))
	}
	ns := binary.BigEndian.Uint64(body)
	if ns > math.MaxInt64 {
		return 0, nil, fmt.Errorf("%w: request timeout %d out of range", ErrProtocol, ns)
	}
	return time.Duration(ns), body[requestPrefixLen:], nil
}
