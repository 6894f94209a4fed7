// Package fsmpb holds the protobuf messages of the lock state machine:
// commands, results and snapshots. The Go code is generated and checked in.
package fsmpb

//go:generate protoc -I ../.. --go_out=../.. --go_opt=paths=source_relative fsm/fsmpb/fsm.proto
