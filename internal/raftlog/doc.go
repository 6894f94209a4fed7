// Package raftlog is a hashicorp/raft LogStore and StableStore on
// append-only segment files: each StoreLogs call is one write and one
// fdatasync, where raft-boltdb's B+tree commits with two fdatasyncs and
// rewrites its pages (node/DESIGN.md, "The log store").
//
// A directory holds:
//
//   - segment files, "<first index, 20 digits>.seg", each a run of frames,
//     one frame per log entry, in index order, every segment beginning
//     where the one before it ends;
//   - "stable", the StableStore's keys, replaced whole (write, fsync,
//     rename, fsync of the directory) on every Set;
//   - "lock", held with flock while the Store is open.
//
// A frame is a 20-byte header — magic, CRC-32C of everything after the
// CRC, body length, and the index of the first entry of the StoreLogs call
// that wrote it — and a body: index, term, type, append time, data and
// extensions.
//
// Open reads every frame and checks its CRC and index. Damage in any
// segment but the last, a gap between segments, a frame whose CRC holds
// but whose index is not the next one, or a damaged frame in the last
// segment followed by an intact frame of a later StoreLogs call is
// ErrCorrupt: bytes the store had synced are not what it wrote. A damaged
// frame in the last segment with nothing intact from a later call after it
// is the torn tail of a call that a crash interrupted before its fdatasync
// returned: Open cuts the file there (Dropped reports it), since raft was
// never told those entries were stored. The one loss this rule cannot tell
// from a torn write is damage to the last synced call when nothing was
// written after it. GetLog checks the CRC of the frame it reads.
//
// Head truncation (DeleteRange from the first index) deletes the segments
// it empties and, when the new first index falls inside a segment,
// records it in the stable file. Tail truncation deletes later segments,
// newest first, then cuts the file and syncs it. The store is monotonic
// (raft.MonotonicLogStore): StoreLogs refuses an index that does not
// follow the last one, except into an empty log.
package raftlog
