package transport

import "sync/atomic"

// Stats is a snapshot of a Transport's counters (totals since New) and
// gauges (current values).
type Stats struct {
	// Listener and handshakes.
	ConnsAccepted      uint64 // TCP connections accepted
	ConnsRejected      uint64 // closed at once: MaxConns open
	ConnsRejectedPerIP uint64 // closed at once: MaxConnsPerIP open from the same address
	HandshakesRejected uint64 // closed at once: MaxPendingHandshakes in progress
	HandshakeTimeouts  uint64 // no TLS handshake + protocol byte within HandshakeTimeout
	TLSFailures        uint64 // TLS handshake failed: no or untrusted certificate, not TLS
	BadFirstBytes      uint64 // unknown protocol byte
	AuthFailures       uint64 // peer proved no member identity (certificate, VerifyPeer, cluster key)
	RaftConnsAccepted  uint64 // connections that selected Raft
	RaftQueueTimeouts  uint64 // Raft connections no Raft layer accepted in time
	RPCConnsAccepted   uint64 // connections that selected RPC
	ActiveConns        int64  // accepted connections open now, at any stage
	PendingHandshakes  int64  // accepted connections in handshake now

	// RPC server.
	RequestsServed     uint64 // handler calls whose reply (or error) was sent
	RequestsBusy       uint64 // requests answered busy (MaxInFlightPerConn)
	RequestsOverBudget uint64 // requests answered busy (MaxInFlightBytesPerConn or MaxInFlightBytes)
	RequestsCanceled   uint64 // requests whose caller gave up (cancel frame, deadline) before the reply
	InFlightBytes      int64  // request payload bytes held by running handlers now
	IdleTimeouts       uint64 // RPC connections closed after IdleTimeout with nothing in flight

	// Frames received from peers, either side. Each closes the connection.
	FramesRejected uint64 // length over MaxFrameSize
	ProtocolErrors uint64 // malformed frames
	IOTimeouts     uint64 // a frame not read (once begun) or written within IOTimeout

	// RPC client (Call).
	Dials         uint64 // connections dialled
	DialFailures  uint64 // dials that failed (TCP, TLS or protocol byte)
	ClientConns   int64  // pooled connections open now
	ConnsLost     uint64 // pooled connections that broke (not by Close or retirement)
	ConnsRetired  uint64 // pooled connections closed after IdleTimeout/2 with nothing in flight
	PendingCalls  int64  // calls waiting for their reply now
	LateResponses uint64 // replies that arrived after their call gave up
}

type counters struct {
	connsAccepted, connsRejected, handshakesRejected, handshakeTimeouts atomic.Uint64
	tlsFailures, badFirstBytes, raftConnsAccepted, raftQueueTimeouts    atomic.Uint64
	rpcConnsAccepted, connsRejectedPerIP, authFailures                  atomic.Uint64
	activeConns, pendingHandshakes                                      atomic.Int64
	requestsServed, requestsBusy, requestsOverBudget, requestsCanceled  atomic.Uint64
	idleTimeouts                                                        atomic.Uint64
	inFlightBytes                                                       atomic.Int64
	framesRejected, protocolErrors, ioTimeouts                          atomic.Uint64
	dials, dialFailures, connsLost, connsRetired, lateResponses         atomic.Uint64
	clientConns, pendingCalls                                           atomic.Int64
}

// Stats returns a snapshot of the counters. Fields are read one by one,
// not atomically together.
func (t *Transport) Stats() Stats {
	s := &t.st
	return Stats{
		ConnsAccepted:      s.connsAccepted.Load(),
		ConnsRejected:      s.connsRejected.Load(),
		ConnsRejectedPerIP: s.connsRejectedPerIP.Load(),
		HandshakesRejected: s.handshakesRejected.Load(),
		HandshakeTimeouts:  s.handshakeTimeouts.Load(),
		TLSFailures:        s.tlsFailures.Load(),
		BadFirstBytes:      s.badFirstBytes.Load(),
		AuthFailures:       s.authFailures.Load(),
		RaftConnsAccepted:  s.raftConnsAccepted.Load(),
		RaftQueueTimeouts:  s.raftQueueTimeouts.Load(),
		RPCConnsAccepted:   s.rpcConnsAccepted.Load(),
		ActiveConns:        s.activeConns.Load(),
		PendingHandshakes:  s.pendingHandshakes.Load(),
		RequestsServed:     s.requestsServed.Load(),
		RequestsBusy:       s.requestsBusy.Load(),
		RequestsOverBudget: s.requestsOverBudget.Load(),
		RequestsCanceled:   s.requestsCanceled.Load(),
		InFlightBytes:      s.inFlightBytes.Load(),
		IdleTimeouts:       s.idleTimeouts.Load(),
		FramesRejected:     s.framesRejected.Load(),
		ProtocolErrors:     s.protocolErrors.Load(),
		IOTimeouts:         s.ioTimeouts.Load(),
		Dials:              s.dials.Load(),
		DialFailures:       s.dialFailures.Load(),
		ClientConns:        s.clientConns.Load(),
		ConnsLost:          s.connsLost.Load(),
		ConnsRetired:       s.connsRetired.Load(),
		PendingCalls:       s.pendingCalls.Load(),
		LateResponses:      s.lateResponses.Load(),
	}
}
