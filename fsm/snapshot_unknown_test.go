package fsm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// TestSnapshotHasUnknown_EveryMessage: an unknown field on any message of
// a snapshot, of every message type the schema can nest in one, is found
// by snapshotHasUnknown (the typed walk Restore uses) as by the reflective
// hasUnknown, and Restore refuses it. A message type added to the schema
// without its place in the typed walk fails here.
func TestSnapshotHasUnknown_EveryMessage(t *testing.T) {
	data := goldenSnapshotV2(t)
	var golden fsmpb.Snapshot
	require.NoError(t, proto.Unmarshal(data, &golden))
	require.False(t, snapshotHasUnknown(&golden))

	count := 0
	visit(golden.ProtoReflect(), func(protoreflect.Message) { count++ })
	covered := map[protoreflect.FullName]bool{}
	extra := protowire.AppendTag(nil, 999, protowire.VarintType)
	extra = protowire.AppendVarint(extra, 1)
	for k := range count {
		snap := proto.Clone(&golden).(*fsmpb.Snapshot)
		i := 0
		visit(snap.ProtoReflect(), func(m protoreflect.Message) {
			if i == k {
				m.SetUnknown(append(m.GetUnknown(), extra...))
				covered[m.Descriptor().FullName()] = true
			}
			i++
		})
		require.True(t, hasUnknown(snap.ProtoReflect()), "message %d", k)
		assert.True(t, snapshotHasUnknown(snap), "message %d", k)
		b, err := proto.Marshal(snap)
		require.NoError(t, err)
		_, err = Restore(b)
		assert.ErrorIs(t, err, ErrCorrupt, "message %d", k)
	}
	all := map[protoreflect.FullName]bool{}
	var types func(md protoreflect.MessageDescriptor)
	types = func(md protoreflect.MessageDescriptor) {
		if all[md.FullName()] {
			return
		}
		all[md.FullName()] = true
		for i := range md.Fields().Len() {
			if f := md.Fields().Get(i).Message(); f != nil {
				types(f)
			}
		}
	}
	types(golden.ProtoReflect().Descriptor())
	assert.Equal(t, all, covered, "the golden snapshot holds every message type a snapshot can")
}

// visit calls f on m and every message inside it, depth first.
func visit(m protoreflect.Message, f func(protoreflect.Message)) {
	f(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil:
		case fd.IsList():
			for i := range v.List().Len() {
				visit(v.List().Get(i).Message(), f)
			}
		default:
			visit(v.Message(), f)
		}
		return true
	})
}
