// Package nodepb holds the protobuf messages of node-to-node RPC (request
// forwarding, keep-alives, read index, membership). Generated code is
// checked in.
package nodepb

//go:generate protoc -I ../.. --go_out=../.. --go_opt=paths=source_relative node/nodepb/rpc.proto
