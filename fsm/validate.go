package fsm

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// Validate reports whether cmd may enter the log: nil, or an error wrapping
// ErrInvalid (a known command with a field out of range), ErrUnknownCommand
// (an operation or a field this version does not know) or ErrTooLarge. It
// is stricter than Apply, which must keep answering entries already in a
// log as it always has (DESIGN.md, "Validation at the door").
func Validate(cmd *fsmpb.Command) error {
	if cmd == nil {
		return fmt.Errorf("%w: no command", ErrInvalid)
	}
	if hasUnknown(cmd.ProtoReflect()) {
		return fmt.Errorf("%w: fields this version does not know", ErrUnknownCommand)
	}
	if size := proto.Size(cmd); size > MaxCommandSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, MaxCommandSize)
	}
	if need := Needs(cmd); need > Protocol {
		// A field of a protocol this build does not speak: what a newer
		// build's command is to it.
		return fmt.Errorf("%w: it needs protocol %d, this build speaks %d", ErrUnknownCommand, need, Protocol)
	}
	err := validateOp(cmd)
	var why invalid
	if errors.As(err, &why) {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, opName(cmd), string(why))
	}
	return err
}

// opName names cmd's operation for messages ("acquire", "release", ...).
func opName(cmd *fsmpb.Command) string {
	if cmd.GetOp() == nil {
		return "barrier"
	}
	return string(cmd.ProtoReflect().WhichOneof(cmd.ProtoReflect().Descriptor().Oneofs().ByName("op")).Name())
}

// invalid is the reason a known command was refused.
type invalid string

func (e invalid) Error() string { return string(e) }

func validateOp(cmd *fsmpb.Command) error {
	switch op := cmd.GetOp().(type) {
	case nil:
		if !cmd.GetIgnorable() {
			return fmt.Errorf("%w: no operation", ErrUnknownCommand)
		}
		return nil // the term barrier
	case *fsmpb.Command_OpenSession:
		c := op.OpenSession
		ttl := time.Duration(c.GetTtlNs())
		switch {
		case c.GetReq().GetSession() == 0:
			return invalid("session 0")
		case ttl < MinSessionTTL || ttl > MaxSessionTTL:
			return invalid(fmt.Sprintf("session TTL %v outside [%v, %v]", ttl, MinSessionTTL, MaxSessionTTL))
		case len(c.GetNode()) > MaxNodeIDLen || !utf8.ValidString(c.GetNode()):
			return invalid(fmt.Sprintf("node ID of %d bytes, limit %d", len(c.GetNode()), MaxNodeIDLen))
		case c.GetSecret() == nil && c.GetOwner() != "":
			return invalid("an owner without a secret: only a client session has one")
		}
		return first(validKey(c.GetSecret(), "secret"), validOwner(c.GetOwner()))
	case *fsmpb.Command_CloseSession:
		c := op.CloseSession
		return first(validRequest(c.GetReq()), validClient(c.GetForSession(), c.GetSecret()))
	case *fsmpb.Command_ExpireSession:
		if op.ExpireSession.GetSession() == 0 {
			return invalid("session 0")
		}
		return nil
	case *fsmpb.Command_Acquire:
		c := op.Acquire
		return first(validRequest(c.GetReq()), validNameErr(c.GetName()), validOwner(c.GetOwner()),
			check(validLeaseTTL(c.GetTtlNs()), fmt.Sprintf("TTL %v: 0 or [%v, %v]", time.Duration(c.GetTtlNs()), MinTTL, MaxTTL)),
			validClient(c.GetForSession(), c.GetSecret()), validKey(c.GetKey(), "key"),
			check(c.GetForSession() == 0 || c.GetKey() != nil, "a claim for a client session needs a key"),
			validShapeErr(c))
	case *fsmpb.Command_Release:
		c := op.Release
		return first(validRequest(c.GetReq()), validNameErr(c.GetName()), validKey(c.GetKey(), "key"),
			check(c.GetToken() != 0 || c.GetKey() != nil, "token 0 without a key"))
	case *fsmpb.Command_Refresh:
		c := op.Refresh
		return first(validRequest(c.GetReq()), validNameErr(c.GetName()), validKey(c.GetKey(), "key"),
			check(c.GetToken() != 0 || c.GetKey() != nil, "token 0 without a key"))
	case *fsmpb.Command_Cancel:
		c := op.Cancel
		return first(validRequest(c.GetReq()), validNameErr(c.GetName()), check(c.GetClaim() != 0, "claim 0"))
	case *fsmpb.Command_ExpireLease:
		c := op.ExpireLease
		return first(validNameErr(c.GetName()), check(c.GetToken() != 0, "token 0"), check(c.GetGeneration() != 0, "generation 0"))
	case *fsmpb.Command_SetProtocol:
		level := op.SetProtocol.GetLevel()
		if level > uint32(Protocol) {
			return fmt.Errorf("%w: protocol %d, this build speaks %d", ErrUnknownCommand, level, Protocol)
		}
		return check(level >= 2, fmt.Sprintf("protocol %d: 2 to %d", level, Protocol))
	case *fsmpb.Command_Revoke:
		c := op.Revoke
		return first(validRequest(c.GetReq()), validNameErr(c.GetName()), check(c.GetToken() != 0, "token 0"))
	case *fsmpb.Command_EndRevoked:
		c := op.EndRevoked
		return first(validNameErr(c.GetName()), check(c.GetToken() != 0, "token 0"))
	case *fsmpb.Command_Adopt:
		c := op.Adopt
		return first(validRequest(c.GetReq()), validNameErr(c.GetName()), check(c.GetToken() != 0, "token 0"), validKey(c.GetKey(), "key"))
	case *fsmpb.Command_FloorToken:
		c := op.FloorToken
		return first(validRequest(c.GetReq()), validNameErr(c.GetName()),
			check(c.GetFloor() <= MaxTokenFloor, fmt.Sprintf("token floor %d above %d", c.GetFloor(), uint64(MaxTokenFloor))))
	case *fsmpb.Command_Proclaim:
		c := op.Proclaim
		return first(validRequest(c.GetReq()), validNameErr(c.GetName()), check(c.GetToken() != 0, "token 0"),
			validValue(c.GetValue()), validKey(c.GetKey(), "key"))
	default:
		return fmt.Errorf("%w: %T", ErrUnknownCommand, op)
	}
}

func validRequest(r *fsmpb.Request) error {
	switch {
	case r == nil:
		return invalid("no request")
	case r.GetSession() == 0:
		return invalid("session 0")
	}
	return nil
}

// validKey: a secret or a key is absent or exactly KeyLen bytes.
func validKey(b []byte, what string) error {
	return check(b == nil || len(b) == KeyLen, fmt.Sprintf("%s of %d bytes: %d", what, len(b), KeyLen))
}

// validShapeErr checks an Acquire's protocol-5 fields against its type
// (validShape), and that a value is UTF-8.
func validShapeErr(c *fsmpb.Acquire) error {
	if _, known := fsmpb.LockType_name[int32(c.GetType())]; !known {
		return invalid(fmt.Sprintf("unknown lock type %d", c.GetType()))
	}
	if _, known := fsmpb.Mode_name[int32(c.GetMode())]; !known {
		return invalid(fmt.Sprintf("unknown mode %d", c.GetMode()))
	}
	if err := validValue(c.GetValue()); err != nil {
		return err
	}
	return check(validShape(c), fmt.Sprintf("%s with limit %d, mode %s and a value of %d bytes",
		c.GetType(), c.GetLimit(), c.GetMode(), len(c.GetValue())))
}

// validValue: an election's value follows an owner's rules.
func validValue(v string) error {
	return first(check(len(v) <= MaxOwnerLen, fmt.Sprintf("value of %d bytes, limit %d", len(v), MaxOwnerLen)),
		check(utf8.ValidString(v), "value is not UTF-8"))
}

func validOwner(owner string) error {
	return check(len(owner) <= MaxOwnerLen, fmt.Sprintf("owner of %d bytes, limit %d", len(owner), MaxOwnerLen))
}

// validClient: a client session is named with its secret, or not at all.
func validClient(id uint64, secret []byte) error {
	switch {
	case id == 0 && secret == nil:
		return nil
	case id == 0 || secret == nil:
		return invalid("a client session needs both its ID and its secret")
	}
	return validKey(secret, "secret")
}

func validNameErr(name string) error {
	return check(validName(name), fmt.Sprintf("name of %d bytes: 1 to %d bytes of UTF-8 without control characters", len(name), MaxNameLen))
}

// check returns why as an error unless ok.
func check(ok bool, why string) error {
	if ok {
		return nil
	}
	return invalid(why)
}

// first returns the first non-nil error.
func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
