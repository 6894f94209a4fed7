package zookeeper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// Node data (DESIGN.md, "Node data, format 2" and "Node data, format 3").
// Format 2 is written, or format 3 (format 2 with a permit's slot) for a
// record that has a slot; format 1, the earlier one (version, kind, TTL,
// owner), still decodes.
const (
	formatV1     = 1
	formatV2     = 2
	formatV3     = 3
	kindSession  = 0
	kindTTL      = 1
	v1HeaderSize = 10 // version, kind, TTL
	v2FixedSize  = 27 // version, kind, state, TTL, granted, adoptions, timeout
	v3FixedSize  = 29 // format 2's, then the slot
	maxHolderLen = 64
	maxNodeLen   = 255
)

// claimState is a claim's state in its node data.
type claimState uint8

const (
	stateQueued  claimState = iota // created; waiting, or a session lease whose grant time is not written
	stateGranted                   // the claim is a lease (written by its grant, a Refresh, a stamp, an adoption)
	stateRevoked                   // Revoke marked it: its holder lets go, or the revoker deletes it
)

// nodeData is the decoded data of a claim node.
type nodeData struct {
	format    uint8         // as decoded (1, 2 or 3); encodeData writes 3 if slotted, else 2
	ttl       time.Duration // 0: session lease
	state     claimState
	granted   int64         // the server's time of the grant, Unix ms; 0: not recorded
	adoptions uint32        // how often the lease was adopted
	timeout   time.Duration // the holder's session timeout: the revoke's grace
	holder    string        // the holding Locker's ID
	node      string        // the holder's Config.Node
	owner     string        // an election's: the term's value
	slotted   bool          // a permit's record, from its grant on: it has a slot
	slot      uint16        // the permit's slot, if slotted
}

// encodeData writes d in format 3 if it has a slot, else in format 2.
// holder and node must fit their length bytes (New and the Config
// validation see to it).
func encodeData(d nodeData) []byte {
	b := make([]byte, 0, v3FixedSize+2+len(d.holder)+len(d.node)+len(d.owner))
	kind := byte(kindSession)
	if d.ttl > 0 {
		kind = kindTTL
	}
	format := byte(formatV2)
	if d.slotted {
		format = formatV3
	}
	b = append(b, format, kind, byte(d.state))
	b = binary.BigEndian.AppendUint64(b, uint64(d.ttl.Milliseconds()))
	b = binary.BigEndian.AppendUint64(b, uint64(d.granted))
	b = binary.BigEndian.AppendUint32(b, d.adoptions)
	b = binary.BigEndian.AppendUint32(b, uint32(min(d.timeout.Milliseconds(), math.MaxUint32)))
	if d.slotted {
		b = binary.BigEndian.AppendUint16(b, d.slot)
	}
	b = append(b, byte(len(d.holder)))
	b = append(b, d.holder...)
	b = append(b, byte(len(d.node)))
	b = append(b, d.node...)
	return append(b, d.owner...)
}

// errBadData: a node's data is not in a format this version understands.
var errBadData = errors.New("zookeeper: unrecognised lock node data")

// decodeData decodes format 1, 2 or 3; anything else is errBadData.
func decodeData(b []byte) (nodeData, error) {
	if len(b) == 0 {
		return nodeData{}, fmt.Errorf("%w: empty", errBadData)
	}
	switch b[0] {
	case formatV1:
		return decodeV1(b)
	case formatV2, formatV3:
		return decodeV2(b)
	}
	return nodeData{}, fmt.Errorf("%w: version %d", errBadData, b[0])
}

func decodeV1(b []byte) (nodeData, error) {
	if len(b) < v1HeaderSize {
		return nodeData{}, fmt.Errorf("%w: %d bytes", errBadData, len(b))
	}
	ttl, err := decodeKind(b[1], binary.BigEndian.Uint64(b[2:]))
	if err != nil {
		return nodeData{}, err
	}
	return nodeData{format: formatV1, ttl: ttl, owner: string(b[v1HeaderSize:])}, nil
}

// decodeV2 decodes format 2, or 3 (format 2 with a slot after the
// timeout).
func decodeV2(b []byte) (nodeData, error) {
	fixed := v2FixedSize
	if b[0] == formatV3 {
		fixed = v3FixedSize
	}
	if len(b) < fixed+2 {
		return nodeData{}, fmt.Errorf("%w: %d bytes", errBadData, len(b))
	}
	ttl, err := decodeKind(b[1], binary.BigEndian.Uint64(b[3:]))
	if err != nil {
		return nodeData{}, err
	}
	d := nodeData{format: b[0], ttl: ttl, state: claimState(b[2])}
	granted := binary.BigEndian.Uint64(b[11:])
	if d.state > stateRevoked || granted > math.MaxInt64 {
		return nodeData{}, fmt.Errorf("%w: state %d, granted %d", errBadData, b[2], granted)
	}
	d.granted = int64(granted)
	d.adoptions = binary.BigEndian.Uint32(b[19:])
	d.timeout = time.Duration(binary.BigEndian.Uint32(b[23:])) * time.Millisecond
	if b[0] == formatV3 {
		d.slotted, d.slot = true, binary.BigEndian.Uint16(b[v2FixedSize:])
		if d.slot >= lock.MaxPermits {
			return nodeData{}, fmt.Errorf("%w: slot %d", errBadData, d.slot)
		}
	}
	rest := b[fixed:]
	d.holder, rest, err = cutField(rest, maxHolderLen, "holder")
	if err != nil {
		return nodeData{}, err
	}
	d.node, rest, err = cutField(rest, maxNodeLen, "node")
	if err != nil {
		return nodeData{}, err
	}
	d.owner = string(rest)
	return d, nil
}

// decodeKind checks a kind byte against its TTL in ms and returns the TTL.
func decodeKind(kind byte, ms uint64) (time.Duration, error) {
	switch {
	case kind == kindSession && ms == 0:
		return 0, nil
	case kind == kindTTL && ms > 0 && ms <= uint64(maxTTLMillis):
		return time.Duration(ms) * time.Millisecond, nil
	}
	return 0, fmt.Errorf("%w: kind %d with TTL %d ms", errBadData, kind, ms)
}

// cutField reads one length-prefixed field of at most limit bytes.
func cutField(b []byte, limit int, what string) (string, []byte, error) {
	if len(b) == 0 {
		return "", nil, fmt.Errorf("%w: no %s length", errBadData, what)
	}
	n := int(b[0])
	if n > limit || len(b) < 1+n {
		return "", nil, fmt.Errorf("%w: %s of %d bytes", errBadData, what, n)
	}
	return string(b[1 : 1+n]), b[1+n:], nil
}

// maxTTLMillis is ZooKeeper's largest TTL (the TTL is stored in 40 bits of
// the ephemeral owner field).
const maxTTLMillis = 1<<40 - 1
