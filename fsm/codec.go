package fsm

import (
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// Limits of the state machine. They repeat lock's input limits so that
// a bad entry cannot corrupt state whoever proposed it.
const (
	MaxCommandSize   = 512 << 10
	MaxNameLen       = 512
	MaxOwnerLen      = 64 << 10
	MinTTL           = 100 * time.Millisecond
	MaxTTL           = 24 * time.Hour
	MinSessionTTL    = 500 * time.Millisecond
	MaxSessionTTL    = time.Hour
	MaxNodeIDLen     = 256
	MaxCachedResults = 1024
	// KeyLen is the length of a client session's secret and of a lease
	// key (protocol 3): 128 random bits.
	KeyLen          = 16
	SnapshotVersion = 2 // written at protocol level 2 and above; Restore also reads 1
	// MaxTokenFloor bounds FloorToken's floor (protocol 4): lock's
	// MaxTokenFloor, 2^62, so that a raised token can never wrap around.
	MaxTokenFloor = 1 << 62
	// MaxPermits bounds a semaphore's limit (protocol 5): lock's
	// MaxPermits.
	MaxPermits = 1024
)

var (
	// ErrCorrupt: bytes that are not a valid command or snapshot.
	ErrCorrupt = errors.New("fsm: corrupt data")
	// ErrUnknownCommand: a command this version does not know and that is not
	// marked ignorable.
	ErrUnknownCommand = errors.New("fsm: unknown command")
	// ErrSnapshotVersion: a snapshot of a format version this build cannot read.
	ErrSnapshotVersion = errors.New("fsm: unsupported snapshot version")
	// ErrInvalid: a command this version knows with a field out of range
	// (Validate).
	ErrInvalid = errors.New("fsm: invalid command")
	// ErrTooLarge: a command over MaxCommandSize.
	ErrTooLarge = errors.New("fsm: command too large")
)

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// Encode marshals cmd deterministically. It fails with ErrTooLarge over
// MaxCommandSize.
func Encode(cmd *fsmpb.Command) ([]byte, error) {
	b, err := marshalOpts.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode: %w", err)
	}
	if len(b) > MaxCommandSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxCommandSize)
	}
	return b, nil
}

// Decode unmarshals a log entry. Errors wrap ErrCorrupt; an entry over
// MaxCommandSize also wraps ErrTooLarge.
func Decode(data []byte) (*fsmpb.Command, error) {
	if len(data) > MaxCommandSize {
		return nil, fmt.Errorf("%w: %w: %d bytes, limit %d", ErrCorrupt, ErrTooLarge, len(data), MaxCommandSize)
	}
	cmd := new(fsmpb.Command)
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, fmt.Errorf("%w: command: %w", ErrCorrupt, err)
	}
	return cmd, nil
}

func validName(name string) bool {
	if name == "" || len(name) > MaxNameLen || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func validLeaseTTL(ns int64) bool {
	return ns == 0 || (ns >= int64(MinTTL) && ns <= int64(MaxTTL))
}
