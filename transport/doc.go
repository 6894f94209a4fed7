// Package transport gives a quorumlock node one TCP port for everything it
// says to its peers: hashicorp/raft's traffic, through a raft.StreamLayer,
// and a multiplexed request/response RPC that followers use to forward
// commands to the leader. It moves opaque bytes and knows nothing of locks.
//
// The first byte of each connection (inside TLS when TLS is configured)
// selects Raft or RPC; it must arrive within a handshake deadline. RPC
// frames are length-prefixed with a hard size cap. Every resource a peer
// can make a node hold is bounded: connections in all and per remote
// address, handshakes in progress, handlers and their request bytes per
// connection and in all, the time a frame may take, and the time an RPC
// connection may sit idle; over a bound the connection is closed (or the
// request answered busy) and counted in Stats. Call pools a few
// connections per peer and keeps many requests in flight on each; its
// deadline is the caller's ctx. Incoming requests go to the Handler given in
// Config.
//
//	tr, err := transport.New(transport.Config{
//		Addr:    "10.0.0.1:7001",
//		TLS:     tlsConf, // optional mutual TLS; otherwise a trusted network
//		Handler: forwarder,
//	})
//	if err != nil { ... }
//	defer tr.Close()
//	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
//		Stream: tr.Raft(), MaxPool: 3, Timeout: 10 * time.Second})
//	reply, err := tr.Call(ctx, leaderAddr, request)
//
// Without Config.TLS nothing authenticates or encrypts the port: it must
// sit on a trusted network. DESIGN.md explains the wire format and why.
package transport
