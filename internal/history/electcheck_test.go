package history_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	h "github.com/quorumlock/quorumlock/internal/history"
)

// goodElection is a correct election history, the base the bad ones plant
// a fault in. Ticks:
//
//	1 c0 campaigns "a"          2 elected, token 5
//	3 c1 campaigns "b"          4 c2 campaigns "x"
//	5 observer 1 sees 5 "a"     6 c0 looks: held
//	7 c0 proclaims "a/p"        8 ok
//	9 observer 1 sees 5 "a/p"   10 c0 resigns  11 ok  12 c0 looks: ended
//	13 observer 1 sees 6 "x" (c2's claim was granted, its caller gives up)
//	14 c2's campaign fails (unknown)
//	15 observer 1 sees 7 "b"    16 c1 elected, token 7   17 c1 looks: held
//	18 observer 2 (a new stream) sees 7 "b"
//	19 c1 resigns  20 ok  21 c1 looks: ended
//	22 observer 1 sees the empty seat   23 Leader (observer 9): the empty seat
func goodElection() h.ElectionHistory {
	return h.ElectionHistory{
		Campaigns: []h.Campaign{
			{Candidate: 0, Value: "a", Token: 5, Outcome: h.OK, Call: 1, Return: 2, LastLive: 6, EndSeen: 12,
				Proclaims: []h.Step{{Value: "a/p", Outcome: h.OK, Call: 7, Return: 8}},
				Resign:    &h.Step{Outcome: h.OK, Call: 10, Return: 11}},
			{Candidate: 1, Value: "b", Token: 7, Outcome: h.OK, Call: 3, Return: 16, LastLive: 17, EndSeen: 21,
				Resign: &h.Step{Outcome: h.OK, Call: 19, Return: 20}},
			{Candidate: 2, Value: "x", Outcome: h.Unknown, Err: "context deadline exceeded", Call: 4, Return: 14},
		},
		Sightings: []h.Sighting{
			{Observer: 1, Stream: 1, Token: 5, Value: "a", At: 5},
			{Observer: 1, Stream: 1, Token: 5, Value: "a/p", At: 9},
			{Observer: 1, Stream: 1, Token: 6, Value: "x", At: 13},
			{Observer: 1, Stream: 1, Token: 7, Value: "b", At: 15},
			{Observer: 2, Stream: 2, Token: 7, Value: "b", At: 18},
			{Observer: 1, Stream: 1, At: 22},
			{Observer: 9, At: 23},
		},
	}
}

func electKinds(res h.ElectionResult) []h.ViolationKind {
	return kinds(h.Result{Violations: res.Violations})
}

func TestCheckElection_good(t *testing.T) {
	res := h.CheckElection(goodElection(), 0)
	assert.True(t, res.OK(), "%s", res)
	assert.Equal(t, "ok", res.String())

	empty := h.CheckElection(h.ElectionHistory{}, 0)
	assert.True(t, empty.OK())
}

// TestCheckElection_plantedFaults: each fault planted in the good history
// is caught, as its kind and nothing else.
func TestCheckElection_plantedFaults(t *testing.T) {
	tests := []struct {
		name  string
		plant func(e *h.ElectionHistory)
		want  []h.ViolationKind
	}{
		{"two live terms: the old one seen held after the new one's Campaign returned", func(e *h.ElectionHistory) {
			e.Campaigns[0].LastLive = 17 // after c1's return at 16
			e.Campaigns[0].EndSeen = 0
		}, []h.ViolationKind{h.TwoLeaders}},
		{"the old term seen held after an observer saw a new token nobody returned", func(e *h.ElectionHistory) {
			e.Campaigns[0].LastLive = 14 // observer 1 saw c2's token 6 at 13
			e.Campaigns[0].EndSeen = 0
		}, []h.ViolationKind{h.TwoLeaders}},
		{"the old term seen held after Leader showed a new token", func(e *h.ElectionHistory) {
			e.Campaigns[1].LastLive, e.Campaigns[1].EndSeen, e.Campaigns[1].Resign = 24, 0, nil
			e.Campaigns = append(e.Campaigns, h.Campaign{Candidate: 3, Value: "y", Outcome: h.Unknown, Call: 20, Return: 25})
			e.Sightings = append(e.Sightings, h.Sighting{Observer: 9, Token: 8, Value: "y", At: 22})
		}, []h.ViolationKind{h.TwoLeaders}},
		{"a token going back: granted below a token returned before the call", func(e *h.ElectionHistory) {
			e.Campaigns = append(e.Campaigns, h.Campaign{Candidate: 3, Value: "z", Token: 4, Outcome: h.OK, Call: 24, Return: 25})
		}, []h.ViolationKind{h.TokenOrder}},
		{"a learnt token going back: observed below a token seen before the call", func(e *h.ElectionHistory) {
			e.Campaigns[2].Call = 16 // after observer 1 saw token 7 at 15
			e.Campaigns[2].Return = 24
			e.Sightings[2].At = 17 // observer 1 would go back too; keep it to observer 3
			e.Sightings[2].Observer = 3
		}, []h.ViolationKind{h.TokenOrder}},
		{"an observer going back", func(e *h.ElectionHistory) {
			e.Sightings = append(e.Sightings, h.Sighting{Observer: 2, Stream: 3, Token: 5, Value: "a/p", At: 24})
		}, []h.ViolationKind{h.ObservedBackward}},
		{"an observed value nobody campaigned or proclaimed", func(e *h.ElectionHistory) {
			e.Sightings[2].Value = "ghost"
		}, []h.ViolationKind{h.ObservedUngranted}},
		{"an observed term with another token than its Campaign returned", func(e *h.ElectionHistory) {
			e.Sightings[4].Token = 8
		}, []h.ViolationKind{h.ObservedUngranted}},
		{"a state observed before its Campaign was invoked", func(e *h.ElectionHistory) {
			e.Sightings = append(e.Sightings, h.Sighting{Observer: 3, Stream: 1, Token: 6, Value: "x", At: 3}) // c2 campaigns at 4
		}, []h.ViolationKind{h.ObservedUngranted}},
		{"a proclaimed value observed before the Proclaim was invoked", func(e *h.ElectionHistory) {
			e.Sightings[1].At = 6 // the Proclaim is invoked at 7
		}, []h.ViolationKind{h.ObservedUngranted}},
		{"a refused Campaign observed elected", func(e *h.ElectionHistory) {
			e.Campaigns[2].Outcome = h.Failed
		}, []h.ViolationKind{h.ObservedUngranted}},
		{"one token returned to two concurrent Campaigns", func(e *h.ElectionHistory) {
			e.Campaigns = append(e.Campaigns, h.Campaign{Candidate: 3, Value: "w", Token: 5, Outcome: h.OK, Call: 1, Return: 3})
			e.Campaigns[0].Call = 1
		}, []h.ViolationKind{h.DuplicateToken}},
		{"one token shown for two Campaigns", func(e *h.ElectionHistory) {
			e.Sightings[2].Token = 5 // c2's "x" shown with c0's token
		}, []h.ViolationKind{h.DuplicateToken}},
		{"malformed: elected with token 0", func(e *h.ElectionHistory) {
			e.Campaigns[0].Token = 0
		}, []h.ViolationKind{h.Malformed}},
		{"malformed: a value campaigned twice", func(e *h.ElectionHistory) {
			e.Campaigns[2].Value = "a"
		}, []h.ViolationKind{h.Malformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := goodElection()
			tt.plant(&e)
			res := h.CheckElection(e, 0)
			assert.False(t, res.OK())
			assert.Equal(t, tt.want, electKinds(res), "%s", res)
		})
	}
}

// TestCheckElection_maxPerKind: violations beyond the cap are counted, not
// listed.
func TestCheckElection_maxPerKind(t *testing.T) {
	e := goodElection()
	for j := range e.Sightings {
		e.Sightings[j].Value = "ghost"
	}
	res := h.CheckElection(e, 2)
	assert.Len(t, res.Violations, 2)
	assert.Equal(t, 3, res.Omitted, "five elected sightings name no Campaign")
	assert.True(t, res.Has(h.ObservedUngranted))
	assert.Contains(t, res.String(), "(3 more omitted)")
}
