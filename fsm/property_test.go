package fsm

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

var (
	propSeed  = flag.Uint64("prop.seed", 0, "run TestState_Property for this seed only")
	propSeeds = flag.Int("prop.seeds", 200, "number of seeds TestState_Property runs")
	propSteps = flag.Int("prop.steps", 300, "commands per history in TestState_Property")
)

var (
	propSessions = []uint64{1, 2, 3, 4}
	propClients  = []uint64{5, 6} // client sessions (protocol 3); secret k(id)
	propNames    = []string{"a", "b", "c", "d", "é/λ"}
)

// history generates random command histories. It reads state A (never
// writes it) to pick plausible arguments: current tokens and generations,
// live sessions, queued claims.
type history struct {
	r       *rand.Rand
	s       *State
	index   uint64
	nextSeq map[uint64]uint64
	acked   map[uint64]uint64
	reqs    []*fsmpb.Command    // earlier request commands, for retries
	tokens  map[string][]uint64 // every token granted per name
	gens    map[string][]uint64 // every generation seen per name
	claims  map[string][]uint64 // every claim ID per name
	raiseAt uint64              // index of the SetProtocol{2}; past the end for some seeds
	raise3  uint64              // index of the SetProtocol{3}, after raiseAt
	raise4  uint64              // index of the SetProtocol{4}, after raise3
}

func newHistory(seed uint64, s *State, steps int) *history {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	raiseAt := 1 + r.Uint64N(uint64(steps)*3/2+1)
	raise3 := raiseAt + 1 + r.Uint64N(uint64(steps)/2+1)
	return &history{
		r:       r,
		raiseAt: raiseAt,
		raise3:  raise3,
		raise4:  raise3 + 1 + r.Uint64N(uint64(steps)/3+1),
		s:       s,
		nextSeq: map[uint64]uint64{},
		acked:   map[uint64]uint64{},
		tokens:  map[string][]uint64{},
		gens:    map[string][]uint64{},
		claims:  map[string][]uint64{},
	}
}

func (h *history) pick(xs []uint64) uint64 {
	if len(xs) == 0 {
		return h.r.Uint64N(h.index + 2)
	}
	return xs[h.r.IntN(len(xs))]
}

func (h *history) name() string { return propNames[h.r.IntN(len(propNames))] }

// session returns a live session most of the time, else any session of the
// pool (possibly dead, possibly never opened).
func (h *history) session() uint64 {
	if live := h.s.Sessions(); len(live) > 0 && h.r.IntN(100) < 85 {
		return live[h.r.IntN(len(live))].ID
	}
	return propSessions[h.r.IntN(len(propSessions))]
}

// req returns the next request of session id, sometimes advancing (or
// overshooting) acked_below.
func (h *history) req(id uint64) *fsmpb.Request {
	h.nextSeq[id]++
	seq := h.nextSeq[id]
	switch n := h.r.IntN(100); {
	case n < 25:
		h.acked[id] = max(h.acked[id], h.acked[id]+h.r.Uint64N(seq-h.acked[id]+1))
	case n < 28:
		// Over-eager client: acked_below beyond the seq in hand.
		return &fsmpb.Request{Session: id, Seq: seq, AckedBelow: seq + 1 + h.r.Uint64N(5)}
	}
	return &fsmpb.Request{Session: id, Seq: seq, AckedBelow: h.acked[id]}
}

// next returns the command for entry h.index+1.
func (h *history) next() *fsmpb.Command {
	h.index++
	cmd := h.gen()
	cmd.StampUnixNano = int64(h.index) * int64(time.Millisecond)
	if reqOf(cmd) != nil {
		if _, isOpen := cmd.GetOp().(*fsmpb.Command_OpenSession); !isOpen {
			h.reqs = append(h.reqs, cmd)
		}
	}
	return cmd
}

func (h *history) gen() *fsmpb.Command {
	r := h.r
	switch h.index {
	case h.raiseAt:
		return cmdSetProtocol(2)
	case h.raise3:
		return cmdSetProtocol(3)
	case h.raise4:
		return cmdSetProtocol(4)
	}
	switch n := r.IntN(140); {
	case n < 8: // open
		id := propSessions[r.IntN(len(propSessions))]
		ttl := sessTTL
		switch r.IntN(40) {
		case 0:
			id = 0
		case 1:
			ttl = -time.Second
		}
		if r.IntN(3) == 0 { // a client session, sometimes with a secret of another
			id = propClients[r.IntN(len(propClients))]
			return cmdOpenClient(id, h.secret(id), fmt.Sprintf("client-%d", id))
		}
		return cmdOpen(id, ttl, fmt.Sprintf("node-%d", r.IntN(3)))
	case n < 12: // close
		id := h.session()
		c := &fsmpb.CloseSession{Req: h.req(id)}
		if r.IntN(3) == 0 {
			c.ForSession = propClients[r.IntN(len(propClients))]
			c.Secret = h.secret(c.ForSession)
		}
		return &fsmpb.Command{Op: &fsmpb.Command_CloseSession{CloseSession: c}}
	case n < 17: // expire session, often stale
		return cmdExpireSession(propSessions[r.IntN(len(propSessions))])
	case n < 47: // acquire
		id := h.session()
		a := &fsmpb.Acquire{Req: h.req(id), Name: h.name(), Owner: fmt.Sprintf("o%d", r.IntN(4))}
		if r.IntN(2) == 0 {
			a.TtlNs = int64(time.Second)
		}
		a.Try = r.IntN(5) == 0
		switch r.IntN(40) {
		case 0:
			a.Name = "bad\x00name"
		case 1:
			a.TtlNs = int64(time.Millisecond)
		}
		switch r.IntN(4) {
		case 0: // for a client session
			a.ForSession = propClients[r.IntN(len(propClients))]
			a.Secret, a.Key = h.secret(a.ForSession), h.key()
		case 1: // keyed
			a.Key = h.key()
		}
		return &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: a}}
	case n < 59: // release
		name := h.name()
		c := &fsmpb.Release{Req: h.req(h.session()), Name: name, Token: h.token(name)}
		if r.IntN(3) == 0 {
			c.Key = h.key()
			if r.IntN(2) == 0 {
				c.Token = 0
			}
		}
		return &fsmpb.Command{Op: &fsmpb.Command_Release{Release: c}}
	case n < 67: // refresh
		name := h.name()
		c := &fsmpb.Refresh{Req: h.req(h.session()), Name: name, Token: h.token(name)}
		if r.IntN(3) == 0 {
			c.Key = h.key()
			if r.IntN(2) == 0 {
				c.Token = 0
			}
		}
		return &fsmpb.Command{Op: &fsmpb.Command_Refresh{Refresh: c}}
	case n < 77: // cancel
		name := h.name()
		claim := h.pick(h.claims[name])
		if li := h.s.Lock(name); li.Held && r.IntN(3) == 0 {
			claim = li.Claim
		}
		return &fsmpb.Command{Op: &fsmpb.Command_Cancel{Cancel: &fsmpb.Cancel{
			Req: h.req(h.session()), Name: name, Claim: claim,
		}}}
	case n < 85: // expire lease, often stale
		name := h.name()
		li := h.s.Lock(name)
		token, gen := li.Token, li.Generation
		if !li.Held || r.IntN(3) == 0 {
			token = h.pick(h.tokens[name])
		}
		if !li.Held || r.IntN(3) == 0 {
			gen = h.pick(h.gens[name])
		}
		return cmdExpireLease(name, token, gen)
	case n < 105: // retry an earlier request, unchanged
		if len(h.reqs) == 0 {
			return cmdExpireSession(propSessions[0])
		}
		// Recent requests are retried more often than old ones.
		i := len(h.reqs) - 1 - min(len(h.reqs)-1, int(r.ExpFloat64()*8))
		return proto.Clone(h.reqs[i]).(*fsmpb.Command)
	case n < 107: // a newer version's ignorable command
		return unknownCommand(true)
	case n < 109: // an ignorable command with no payload at all
		return &fsmpb.Command{Ignorable: true}
	case n < 110: // a newer version's command that must not be skipped: refused
		return unknownCommand(false)
	case n < 112: // a stale, lowering or (refused) too high SetProtocol
		return cmdSetProtocol([]uint32{0, 1, uint32(h.s.Protocol()), Protocol + 1}[r.IntN(4)])
	case n < 120: // revoke
		name := h.name()
		return &fsmpb.Command{Op: &fsmpb.Command_Revoke{Revoke: &fsmpb.Revoke{
			Req: h.req(h.session()), Name: name, Token: h.token(name),
		}}}
	case n < 124: // end revoked, often stale
		name, token := h.name(), uint64(0)
		if rl := h.s.Revoked(); len(rl) > 0 && r.IntN(3) > 0 {
			name, token = rl[r.IntN(len(rl))].Name, rl[r.IntN(len(rl))].Token
		} else {
			token = h.token(name)
		}
		return cmdEndRevoked(name, token)
	case n < 130: // adopt
		name := h.name()
		c := &fsmpb.Adopt{Req: h.req(h.session()), Name: name, Token: h.token(name)}
		if r.IntN(2) == 0 {
			c.Key = h.key()
		}
		return &fsmpb.Command{Op: &fsmpb.Command_Adopt{Adopt: c}}
	default: // floor: often above the index, at times at or below it, rarely too high
		var floor uint64
		switch n := r.IntN(20); {
		case n < 12:
			floor = h.index + r.Uint64N(40)
		case n < 18:
			floor = r.Uint64N(h.index + 1)
		case n < 19:
			floor = MaxTokenFloor - r.Uint64N(2)
		default:
			floor = MaxTokenFloor + 1
		}
		return &fsmpb.Command{Op: &fsmpb.Command_FloorToken{FloorToken: &fsmpb.FloorToken{
			Req: h.req(h.session()), Name: h.name(), Floor: floor,
		}}}
	}
}

// secret is client session id's secret most of the time, else a wrong one.
func (h *history) secret(id uint64) []byte {
	if h.r.IntN(10) == 0 {
		return k(0xEE)
	}
	return k(byte(id))
}

// key is one of a few lease keys: claims share them at times.
func (h *history) key() []byte { return k(byte(0x40 + h.r.IntN(4))) }

// token returns the current token of name most of the time, else an old or
// made-up one.
func (h *history) token(name string) uint64 {
	if li := h.s.Lock(name); li.Held && h.r.IntN(10) < 7 {
		return li.Token
	}
	return h.pick(h.tokens[name])
}

// observe records what the events of one entry granted.
func (h *history) observe(events []Event) {
	for _, ev := range events {
		switch ev.Kind {
		case EventGranted:
			h.tokens[ev.Name] = append(h.tokens[ev.Name], ev.Token)
			h.gens[ev.Name] = append(h.gens[ev.Name], ev.Generation)
			h.claims[ev.Name] = append(h.claims[ev.Name], ev.Claim)
		case EventRefreshed, EventAdopted:
			h.gens[ev.Name] = append(h.gens[ev.Name], ev.Generation)
		}
	}
	for name := range h.claims {
		for _, id := range queueOf(h.s, name) {
			if !slices.Contains(h.claims[name], id) {
				h.claims[name] = append(h.claims[name], id)
			}
		}
	}
}

// unknownCommand decodes a command carrying field 30, which v1 does not
// know: what a newer version's command looks like to this build.
func unknownCommand(ignorable bool) *fsmpb.Command {
	b, err := Encode(&fsmpb.Command{Ignorable: ignorable, StampUnixNano: 1})
	if err != nil {
		panic(err)
	}
	b = protowire.AppendTag(b, 30, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("future"))
	cmd, err := Decode(b)
	if err != nil {
		panic(err)
	}
	return cmd
}

// eventModel follows holders through the events and checks I1 and I2,
// and that a revoked lease is never refreshed or adopted and ends as
// revoked.
type eventModel struct {
	holder    map[string]uint64 // name → token of the current lease
	lastToken map[string]uint64
	revoked   map[string]bool // name → its current lease is revoked
	floor     uint64          // the floor every next grant must pass (protocol 4)
}

func newEventModel() *eventModel {
	return &eventModel{holder: map[string]uint64{}, lastToken: map[string]uint64{}, revoked: map[string]bool{}}
}

// floored records a FloorToken that the state answered OK.
func (m *eventModel) floored(cmd *fsmpb.Command, res *fsmpb.Result) {
	if c := cmd.GetFloorToken(); c != nil && res.GetCode() == fsmpb.Code_CODE_OK {
		m.floor = max(m.floor, c.GetFloor())
	}
}

func (m *eventModel) apply(index uint64, events []Event) error {
	for _, ev := range events {
		switch ev.Kind {
		case EventGranted:
			if tok, held := m.holder[ev.Name]; held {
				return fmt.Errorf("granted %q (token %d) while token %d holds it", ev.Name, ev.Token, tok)
			}
			// The token is the index, or above the store's floor if that
			// is higher, whatever the name (DESIGN.md, "Protocol 4"); the
			// generation the index. A used floor moves up to the token.
			want := max(index, m.floor+1)
			if ev.Token != want || ev.Generation != index {
				return fmt.Errorf("granted %q with token %d generation %d at index %d (floor %d)",
					ev.Name, ev.Token, ev.Generation, index, m.floor)
			}
			if want > index {
				m.floor = want
			}
			if ev.Token <= m.lastToken[ev.Name] {
				return fmt.Errorf("token of %q went from %d to %d", ev.Name, m.lastToken[ev.Name], ev.Token)
			}
			m.holder[ev.Name], m.lastToken[ev.Name] = ev.Token, ev.Token
		case EventEnded:
			if tok, held := m.holder[ev.Name]; !held || tok != ev.Token {
				return fmt.Errorf("ended %q token %d, holder is %d (held %v)", ev.Name, ev.Token, tok, held)
			}
			if m.revoked[ev.Name] && ev.Reason != ReasonRevoked {
				return fmt.Errorf("revoked lease %q token %d ended %v", ev.Name, ev.Token, ev.Reason)
			}
			delete(m.holder, ev.Name)
			delete(m.revoked, ev.Name)
		case EventRefreshed, EventAdopted:
			if m.holder[ev.Name] != ev.Token || ev.Generation != index || m.revoked[ev.Name] {
				return fmt.Errorf("%v %q token %d generation %d at index %d (revoked %v)",
					ev.Kind, ev.Name, ev.Token, ev.Generation, index, m.revoked[ev.Name])
			}
		case EventRevoking:
			if m.holder[ev.Name] != ev.Token || m.revoked[ev.Name] {
				return fmt.Errorf("revoking %q token %d, holder is %d (revoked %v)", ev.Name, ev.Token, m.holder[ev.Name], m.revoked[ev.Name])
			}
			m.revoked[ev.Name] = true
		}
	}
	return nil
}

// check compares the model's holders with the state.
func (m *eventModel) check(s *State) error {
	for _, name := range propNames {
		li := s.Lock(name)
		tok, held := m.holder[name]
		if li.Held != held || li.Token != tok || li.Revoked != m.revoked[name] {
			return fmt.Errorf("lock %q: state says held=%v token=%d revoked=%v, events say held=%v token=%d revoked=%v",
				name, li.Held, li.Token, li.Revoked, held, tok, m.revoked[name])
		}
	}
	return nil
}

// TestState_Property applies random histories to two states, one of which
// is replaced by a restored snapshot of itself halfway, and requires equal
// results, events and snapshots, and the invariants after every entry.
func TestState_Property(t *testing.T) {
	seeds := make([]uint64, 0, *propSeeds)
	if *propSeed != 0 {
		seeds = append(seeds, *propSeed)
	} else {
		for i := range *propSeeds {
			seeds = append(seeds, uint64(i+1))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runProperty(t, seed, *propSteps)
		})
	}
}

func runProperty(t *testing.T, seed uint64, steps int) {
	a, b := New(), New()
	h := newHistory(seed, a, steps)
	model := newEventModel()
	restoreAt := 1 + h.r.IntN(max(1, steps-1))
	// log keeps what happened, formatted only if the test fails.
	type entry struct {
		index    uint64
		cmd      *fsmpb.Command
		res      *fsmpb.Result
		events   []Event
		restored bool
	}
	var log []entry
	defer func() {
		if !t.Failed() {
			return
		}
		var sb strings.Builder
		for _, e := range log[max(0, len(log)-40):] {
			if e.restored {
				fmt.Fprintf(&sb, "-- B restored from its snapshot\n")
			}
			fmt.Fprintf(&sb, "%d: %s => {%v} %+v\n", e.index, prototext.MarshalOptions{}.Format(e.cmd), e.res, e.events)
		}
		t.Logf("seed %d (rerun: go test ./fsm -run 'TestState_Property/seed=%d$' or -prop.seed=%d); last entries:\n%s",
			seed, seed, seed, sb.String())
	}()
	restored := false
	for step := 1; step <= steps; step++ {
		if step == restoreAt {
			snap := mustSnapshot(t, b)
			r, err := Restore(snap)
			require.NoError(t, err, "seed %d: restore at step %d", seed, step)
			require.Equal(t, snap, mustSnapshot(t, r), "seed %d: restored snapshot differs", seed)
			b, restored = r, true
		}
		cmd := h.next()
		idx := h.index
		var before []byte
		unsupported := a.Protocol() < Needs(cmd) // a command above the level changes nothing
		if cmd.GetOp() == nil || unsupported || cmd.GetSetProtocol() != nil {
			before = mustSnapshot(t, a)
		}
		resA, evA, errA := a.Apply(idx, cmd)
		resB, evB, errB := b.Apply(idx, cmd)
		log = append(log, entry{index: idx, cmd: cmd, res: resA, events: evA, restored: restored})
		restored = false
		require.Equal(t, errA, errB, "seed %d index %d: errors differ", seed, idx)
		if errA != nil {
			require.ErrorIs(t, errA, ErrUnknownCommand, "seed %d index %d", seed, idx)
			require.Equal(t, before, mustSnapshot(t, a), "seed %d index %d: failed command changed state", seed, idx)
			continue
		}
		require.True(t, proto.Equal(resA, resB), "seed %d index %d: results differ: A %v, B %v", seed, idx, resA, resB)
		require.Equal(t, evA, evB, "seed %d index %d: events differ", seed, idx)
		if cmd.GetOp() == nil {
			require.Equal(t, fsmpb.Code_CODE_UNSPECIFIED, resA.GetCode(), "seed %d index %d", seed, idx)
			require.Empty(t, evA, "seed %d index %d", seed, idx)
			require.Equal(t, before, mustSnapshot(t, a), "seed %d index %d: ignorable command changed state", seed, idx)
		}
		if unsupported && cmd.GetSetProtocol() == nil {
			require.Equal(t, fsmpb.Code_CODE_UNSUPPORTED, resA.GetCode(), "seed %d index %d", seed, idx)
			require.Equal(t, before, mustSnapshot(t, a), "seed %d index %d: unsupported command changed state", seed, idx)
		}
		require.NoError(t, model.apply(idx, evA), "seed %d index %d", seed, idx)
		model.floored(cmd, resA)
		if f := tokenFloorOf(a); f != 0 && cmd.GetOp() != nil {
			require.Greater(t, f, idx, "seed %d index %d: token floor left behind by the index", seed, idx)
		}
		require.NoError(t, model.check(a), "seed %d index %d", seed, idx)
		require.NoError(t, checkInvariants(a), "seed %d index %d", seed, idx)
		h.observe(evA)
		if step%50 == 0 || step == steps {
			snapA, snapB := mustSnapshot(t, a), mustSnapshot(t, b)
			require.True(t, bytes.Equal(snapA, snapB), "seed %d index %d: snapshots differ", seed, idx)
			restored, err := Restore(snapA)
			require.NoError(t, err, "seed %d index %d", seed, idx)
			require.NoError(t, checkInvariants(restored), "seed %d index %d: restored state", seed, idx)
		}
	}
	assert.Equal(t, mustSnapshot(t, a), mustSnapshot(t, b), "seed %d: final snapshots differ", seed)
}
