package transport

import "errors"

// Errors returned by this package. Match them with errors.Is.
var (
	// ErrClosed: the Transport (or the Raft stream layer) was closed.
	// Pending calls fail with it when Close is called.
	ErrClosed = errors.New("transport: closed")
	// ErrInvalidConfig is wrapped by New's errors about Config fields; the
	// message names the field.
	ErrInvalidConfig = errors.New("transport: invalid config")
	// ErrFrameTooLarge: a payload or reply exceeds MaxFrameSize. From Call,
	// nothing was handled (an oversize request is refused before sending;
	// an oversize reply is refused by the server, which has then run the
	// handler, so the outcome is unknown only for non-idempotent handlers).
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrConnLost: the connection broke while the call was pending. The
	// request may or may not have been handled; retry idempotent requests.
	ErrConnLost = errors.New("transport: connection lost")
	// ErrUnreachable: no connection could be made (dial, TLS handshake or
	// protocol byte failed). The request was not sent; retryable.
	ErrUnreachable = errors.New("transport: peer unreachable")
	// ErrBusy: the peer refused the request because this connection has
	// MaxInFlightPerConn requests in its handlers, or because its payload
	// would exceed a byte budget (MaxInFlightBytesPerConn,
	// MaxInFlightBytes). Not handled; retryable.
	ErrBusy = errors.New("transport: peer busy")
	// ErrProtocol: a peer sent malformed frames; the connection was closed.
	// Seen wrapped inside ErrConnLost and in logs.
	ErrProtocol = errors.New("transport: protocol violation")
	// ErrUnauthenticated: the peer did not prove a member identity (its
	// certificate names no member, VerifyPeer refused it, or the
	// cluster-key exchange failed). Inside ErrUnreachable for a dial.
	ErrUnauthenticated = errors.New("transport: peer not authenticated")

	// errNoHandler answers requests when Config.Handler is nil (the caller
	// sees its message in a RemoteError).
	errNoHandler = errors.New("transport: no handler configured on this node")
)

// RemoteError is a Handler's error as the caller sees it: only the message
// crosses the wire, not the error's identity. Encode domain outcomes in the
// reply payload; use errors for failures.
type RemoteError struct {
	Message string
}

func (e *RemoteError) Error() string { return "transport: remote error: " + e.Message }

// Retryable reports whether err means "try again, possibly elsewhere":
// ErrConnLost (the request may have been handled: retry only idempotent
// requests), ErrUnreachable or ErrBusy (it was not handled).
func Retryable(err error) bool {
	return errors.Is(err, ErrConnLost) || errors.Is(err, ErrUnreachable) || errors.Is(err, ErrBusy)
}
