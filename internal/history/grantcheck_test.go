package history_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	h "github.com/quorumlock/quorumlock/internal/history"
)

// goodGrants is a correct history of a semaphore "s" (limit 2) and a
// read-write lock "rw", the base the bad ones plant a fault in. Intervals
// are [Return, LastLive]:
//
//	#0 permit slot 0 token 10 [2, 8]     #1 permit slot 1 token 11 [4, 9]
//	#2 permit slot 0 token 12 [11, 13]   #3 permit slot 1 token 13 [15, 16]
//	#4 read token 20 [21, 24]            #5 read token 21 [23, 25]
//	#6 write token 22 [28, 29], invoked at 22 (after #4 returned)
//	#7 read token 23 [32, 33]            #8 write token 24 [36, 37]
//	#9 a write that timed out (unknown)
//
// #1's end was first seen at 17, after #3 returned: a late look, no
// violation (only the last look that found it held counts).
func goodGrants() h.GrantHistory {
	permit := func(w int, token uint64, slot int, call, ret, live, end int64) h.Grant {
		return h.Grant{Worker: w, Name: "s", Mode: h.PermitMode, Limit: 2, Token: token, Slot: slot,
			Outcome: h.OK, Call: call, Return: ret, LastLive: live, EndSeen: end}
	}
	rw := func(w int, mode h.Mode, token uint64, call, ret, live, end int64) h.Grant {
		return h.Grant{Worker: w, Name: "rw", Mode: mode, Token: token, Outcome: h.OK, Call: call, Return: ret, LastLive: live, EndSeen: end}
	}
	return h.GrantHistory{Grants: []h.Grant{
		permit(0, 10, 0, 1, 2, 8, 10),
		permit(1, 11, 1, 3, 4, 9, 17),
		permit(2, 12, 0, 5, 11, 13, 14),
		permit(3, 13, 1, 6, 15, 16, 18),
		rw(0, h.ReadMode, 20, 20, 21, 24, 26),
		rw(1, h.ReadMode, 21, 22, 23, 25, 27),
		rw(2, h.WriteMode, 22, 22, 28, 29, 31),
		rw(0, h.ReadMode, 23, 30, 32, 33, 34),
		rw(1, h.WriteMode, 24, 35, 36, 37, 38),
		{Worker: 3, Name: "rw", Mode: h.WriteMode, Outcome: h.Unknown, Err: "context deadline exceeded", Call: 39, Return: 40},
	}}
}

func grantKinds(res h.GrantResult) []h.ViolationKind {
	return kinds(h.Result{Violations: res.Violations})
}

func TestCheckGrants_good(t *testing.T) {
	res := h.CheckGrants(goodGrants(), 0)
	assert.True(t, res.OK(), "%s", res)
	assert.Equal(t, "ok", res.String())
	assert.True(t, h.CheckGrants(h.GrantHistory{}, 0).OK())
}

// TestCheckGrants_plantedFaults: each fault planted in the good history is
// caught, as its kind and nothing else.
func TestCheckGrants_plantedFaults(t *testing.T) {
	tests := []struct {
		name  string
		plant func(g []h.Grant)
		want  []h.ViolationKind
	}{
		{"three permits of limit 2 live at one tick", func(g []h.Grant) {
			g[2].Return, g[2].Slot = 7, 1 // [7, 13] meets #0 [2, 8] and #1 [4, 9]; shares #1's slot
		}, []h.ViolationKind{h.OverLimit, h.SlotShared}},
		{"three permits live, a limit of 3 in force: no violation", func(g []h.Grant) {
			g[2].Return, g[2].Slot = 7, 2
			for i := range 4 {
				g[i].Limit = 3
			}
		}, nil},
		{"two live permits on one slot", func(g []h.Grant) {
			g[1].Slot = 0 // #0 [2, 8] and #1 [4, 9]
		}, []h.ViolationKind{h.SlotShared}},
		{"a permit seen held after the next one on its slot returned", func(g []h.Grant) {
			g[0].LastLive, g[0].EndSeen = 12, 0 // #2 returned at 11 on slot 0
		}, []h.ViolationKind{h.SlotShared}},
		{"a read live inside a write", func(g []h.Grant) {
			g[6].LastLive, g[6].EndSeen = 32, 0 // the write [28, 32] meets the read #7 [32, 33]
		}, []h.ViolationKind{h.ReadWriteOverlap}},
		{"a write returned while a read is still seen held", func(g []h.Grant) {
			g[5].LastLive = 28 // the read #5 [23, 28] meets the write #6 [28, 29]
		}, []h.ViolationKind{h.ReadWriteOverlap}},
		{"two live writes", func(g []h.Grant) {
			g[6].LastLive, g[6].EndSeen = 36, 0                       // [28, 36] meets #8 [36, 37]
			g[7].Outcome, g[7].Token, g[7].LastLive = h.Unknown, 0, 0 // no read in between
		}, []h.ViolationKind{h.TwoWriters}},
		{"two grants of a name with one token", func(g []h.Grant) {
			g[5].Token = 20
		}, []h.ViolationKind{h.DuplicateToken}},
		{"two permits with one token", func(g []h.Grant) {
			g[3].Token = 10
		}, []h.ViolationKind{h.DuplicateToken}},
		{"a write's token below an earlier read's", func(g []h.Grant) {
			g[6].Token = 19 // #4 (token 20) returned at 21, before #6 was invoked at 22
		}, []h.ViolationKind{h.TokenOrder}},
		{"a write's token below an earlier write's", func(g []h.Grant) {
			g[8].Token = 19
		}, []h.ViolationKind{h.TokenOrder}},
		{"a read returned after the write was invoked may have a greater token", func(g []h.Grant) {
			g[5].Token = 25 // #5 returned at 23, after #6 was invoked at 22
			g[8].Token = 26 // but before #8 was
		}, nil},
		{"seen held before its Acquire returned", func(g []h.Grant) {
			g[0].LastLive = 1
		}, []h.ViolationKind{h.Malformed}},
		{"a slot outside the limit", func(g []h.Grant) {
			g[3].Slot = 2
		}, []h.ViolationKind{h.Malformed}},
		{"two limits for one semaphore", func(g []h.Grant) {
			g[3].Limit = 3
		}, []h.ViolationKind{h.Malformed}},
		{"one name a semaphore and a read-write lock", func(g []h.Grant) {
			g[4].Name = "s"
		}, []h.ViolationKind{h.Malformed}},
		{"a token without a grant", func(g []h.Grant) {
			g[9].Token = 30
		}, []h.ViolationKind{h.Malformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hist := goodGrants()
			tt.plant(hist.Grants)
			res := h.CheckGrants(hist, 0)
			assert.ElementsMatch(t, tt.want, grantKinds(res), "%s", res)
			assert.Equal(t, tt.want == nil, res.OK())
		})
	}
}

// TestCheckGrants_cap: violations beyond the cap per kind are counted, not
// listed.
func TestCheckGrants_cap(t *testing.T) {
	hist := goodGrants()
	for i := range 4 {
		hist.Grants[i].Slot, hist.Grants[i].LastLive, hist.Grants[i].EndSeen = 0, 20, 0
	}
	res := h.CheckGrants(hist, 2)
	assert.False(t, res.OK())
	assert.True(t, res.Has(h.SlotShared))
	assert.Positive(t, res.Omitted, "%s", res)
}
