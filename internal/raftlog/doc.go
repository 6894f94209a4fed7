// Package raftlog is a hashicorp/raft LogStore and StableStore on
// append-only segment files: each StoreLogs call is one write and one
// fdatasync, where raft-boltdb's B+tree commits with two fdatasyncs and
// rewrites its pages (node/DESIGN.md, "Durability").
//
// A directory holds:
//
//   - segment files, "<first index, 20 digits>.seg", each a run of calls,
//     one per StoreLogs, in index order, every segment beginning where the
//     one before it ends;
//   - "stable", the StableStore's keys and the store's own (its salt, and
//     the first index after a head truncation), replaced whole (write,
//     fsync, rename, fsync of the directory) on every change, and written
//     before any segment;
//   - "lock", held with flock while the Store is open.
//
// A segment starts with a 16-byte header (magic, CRC, first index),
// written and synced when the file is made, before any call. A call is a
// 24-byte header — magic, CRC, the length of its frames, their
// count and the first entry's index — and one frame per entry: a 12-byte
// header (magic, CRC, body length) and a body (index, term, type, append
// time, data, extensions). Every CRC is CRC-32C seeded with the
// directory's salt, a random number drawn when the store was made: bytes
// a client put into an entry cannot pass for a header of this directory,
// and a segment header that fails its CRC (a stable file of another
// store) is damage, never a torn write.
//
// Open reads every call and frame and checks CRCs and indexes. Calls are
// serialised and each is synced before the next is written, so a crash
// can only damage the last call in the directory. Damage there — nothing
// after it: after a damaged frame, no byte past the end the frame's own
// call header gives; after a damaged call header, no intact call header
// anywhere after it — is a torn tail: Open
// cuts that call off whole (raft was never told it was stored; Dropped
// reports it). Any other damage is ErrCorrupt: in a segment that is not
// the last, followed by a later call, a gap between segments, an intact
// frame or call under the wrong index, a missing or damaged stable file,
// a segment header that fails its CRC (with a stable file of another
// directory every call would look damaged, and the log of one segment
// would pass for a torn tail, cut whole).
// The losses this rule cannot tell from a torn write: damage to the last
// synced call with nothing written after it, and damage that begins at a
// call header and leaves no call header after it intact (zeros from a
// call boundary to the end of the file): the calls from there on are cut
// as one torn call. GetLog checks the CRC of the frame it reads.
//
// Head truncation (DeleteRange from the first index) deletes the segments
// it empties and, when the new first index falls inside a segment,
// records it in the stable file. Tail truncation deletes later segments,
// newest first, then cuts the last one at a call's start and syncs it;
// when the cut falls inside a call, the segment is rewritten with the
// call's kept entries as a call of their own into a new file that
// replaces it by rename. A crash thus leaves a prefix or a suffix of the
// log it was cutting, never a log without entries raft was told were
// stored. When the directory sync after a segment's removal or rename
// fails, the store goes on with the files as they are (the first index
// inside the log) and the next StoreLogs syncs the directory before it
// writes: an append is never acknowledged into a segment whose name a
// crash could still undo. The store is monotonic (raft.MonotonicLogStore): StoreLogs
// refuses an index that does not follow the last one, except into an
// empty log.
package raftlog
