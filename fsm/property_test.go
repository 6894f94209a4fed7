package fsm

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
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
	propNames    = []string{"a", "b", "c", "d", "é/λ", propSem, propRW, propElection}
)

// The names the histories use as another type than a mutex (protocol 5),
// most of the time: a semaphore of limit 2, a read-write lock, an
// election.
const (
	propSem      = "s"
	propRW       = "rw"
	propElection = "e"
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
	raise5  uint64              // index of the SetProtocol{5}, after raise4
}

func newHistory(seed uint64, s *State, steps int) *history {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	raiseAt := 1 + r.Uint64N(uint64(steps)*3/2+1)
	raise3 := raiseAt + 1 + r.Uint64N(uint64(steps)/2+1)
	raise4 := raise3 + 1 + r.Uint64N(uint64(steps)/3+1)
	return &history{
		raise5:  raise4 + 1 + r.Uint64N(uint64(steps)/4+1),
		r:       r,
		raiseAt: raiseAt,
		raise3:  raise3,
		raise4:  raise4,
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
	case h.raise5:
		return cmdSetProtocol(5)
	}
	switch n := r.IntN(146); {
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
		h.shape(a)
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
			if len(li.Holders) > 0 {
				claim = li.Holders[r.IntN(len(li.Holders))].Claim
			}
		}
		return &fsmpb.Command{Op: &fsmpb.Command_Cancel{Cancel: &fsmpb.Cancel{
			Req: h.req(h.session()), Name: name, Claim: claim,
		}}}
	case n < 85: // expire lease, often stale
		name := h.name()
		li := h.s.Lock(name)
		token, gen := li.Token, li.Generation
		if len(li.Holders) > 0 {
			hi := li.Holders[r.IntN(len(li.Holders))]
			token, gen = hi.Token, hi.Generation
		}
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
		return cmdSetProtocol([]uint32{0, 1, uint32(h.s.Protocol()), uint32(Protocol) + 1}[r.IntN(4)])
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
	case n < 140: // floor: often above the index, at times at or below it, rarely too high
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
	default: // proclaim, mostly of the election
		name := propElection
		if r.IntN(5) == 0 {
			name = h.name()
		}
		c := &fsmpb.Proclaim{Req: h.req(h.session()), Name: name, Token: h.token(name), Value: fmt.Sprintf("p%d", r.IntN(3))}
		if r.IntN(4) == 0 {
			c.Key = h.key()
		}
		return &fsmpb.Command{Op: &fsmpb.Command_Proclaim{Proclaim: c}}
	}
}

// shape sets an Acquire's protocol-5 fields from its name (a semaphore of
// limit 2, a read-write lock in either mode, an election with a value, a
// mutex), and now and then another type or limit (MISMATCH) or a shape
// that fits no type (INVALID).
func (h *history) shape(a *fsmpb.Acquire) {
	r := h.r
	name := a.GetName()
	if r.IntN(25) == 0 {
		name = []string{"a", propSem, propRW, propElection}[r.IntN(4)]
	}
	switch name {
	case propSem:
		a.Type, a.Limit = fsmpb.LockType_LOCK_TYPE_SEMAPHORE, 2
		if r.IntN(10) == 0 {
			a.Limit = 3
		}
	case propRW:
		a.Type, a.Mode = fsmpb.LockType_LOCK_TYPE_READ_WRITE, fsmpb.Mode(1+r.IntN(2))
	case propElection:
		a.Type, a.Value = fsmpb.LockType_LOCK_TYPE_ELECTION, fmt.Sprintf("v%d", r.IntN(3))
	}
	if r.IntN(60) == 0 {
		a.Mode = fsmpb.Mode_MODE_READ // on anything but a read-write lock: INVALID
		a.Type = fsmpb.LockType_LOCK_TYPE_SEMAPHORE
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
		if len(li.Holders) > 0 {
			return li.Holders[h.r.IntN(len(li.Holders))].Token
		}
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

// eventModel follows holders through the events and checks I1 (with
// many holders: protocol 5) and I2, and that a revoked lease is never
// refreshed, adopted or proclaimed and ends as revoked.
type eventModel struct {
	holders   map[string]map[uint64]modelLease // name → token → lease
	typ       map[string]fsmpb.LockType        // of the names held
	lastToken map[string]uint64
	floor     uint64 // the floor every next grant must pass (protocol 4)
	level     int    // the protocol level, from the SetProtocol entries
}

// modelLease is what the model knows of one held lease.
type modelLease struct {
	mode    fsmpb.Mode
	slot    int
	value   string
	revoked bool
}

func newEventModel() *eventModel {
	return &eventModel{
		holders: map[string]map[uint64]modelLease{}, typ: map[string]fsmpb.LockType{},
		lastToken: map[string]uint64{}, level: 1,
	}
}

// floored records a FloorToken that the state answered OK, and the level
// a SetProtocol raised.
func (m *eventModel) floored(cmd *fsmpb.Command, res *fsmpb.Result) {
	if c := cmd.GetFloorToken(); c != nil && res.GetCode() == fsmpb.Code_CODE_OK {
		m.floor = max(m.floor, c.GetFloor())
	}
	if c := cmd.GetSetProtocol(); c != nil && res.GetCode() == fsmpb.Code_CODE_OK {
		m.level = max(m.level, int(c.GetLevel()))
	}
}

func (m *eventModel) apply(index uint64, events []Event) error {
	// A session that ends in an entry is granted nothing in it: its
	// queued claims are withdrawn before anything is handed on.
	for _, end := range events {
		if end.Kind != EventSessionEnded {
			continue
		}
		for _, ev := range events {
			if ev.Kind == EventGranted && ev.Session == end.Session {
				return fmt.Errorf("session %d granted %q token %d in the entry that ends it", ev.Session, ev.Name, ev.Token)
			}
		}
	}
	for _, ev := range events {
		held := m.holders[ev.Name]
		h, isHeld := held[ev.Token]
		switch ev.Kind {
		case EventGranted:
			if err := m.admits(ev); err != nil {
				return err
			}
			// The token is the index, or above the store's floor if that
			// is higher, whatever the name (DESIGN.md, "Protocol 4"); the
			// generation the index. A used floor moves up to the token,
			// and from level 5 every grant moves it (DESIGN.md, "Protocol 5").
			want := max(index, m.floor+1)
			if ev.Token != want || ev.Generation != index {
				return fmt.Errorf("granted %q with token %d generation %d at index %d (floor %d)",
					ev.Name, ev.Token, ev.Generation, index, m.floor)
			}
			if want > index || m.level >= 5 {
				m.floor = want
			}
			if ev.Token <= m.lastToken[ev.Name] {
				return fmt.Errorf("token of %q went from %d to %d", ev.Name, m.lastToken[ev.Name], ev.Token)
			}
			if held == nil {
				held = map[uint64]modelLease{}
				m.holders[ev.Name] = held
			}
			held[ev.Token] = modelLease{mode: ev.Mode, slot: ev.Slot, value: ev.Value}
			m.typ[ev.Name], m.lastToken[ev.Name] = ev.Type, ev.Token
		case EventEnded:
			if !isHeld {
				return fmt.Errorf("ended %q token %d, not held (holders %v)", ev.Name, ev.Token, held)
			}
			if h.revoked && ev.Reason != ReasonRevoked {
				return fmt.Errorf("revoked lease %q token %d ended %v", ev.Name, ev.Token, ev.Reason)
			}
			delete(held, ev.Token)
			if len(held) == 0 {
				delete(m.holders, ev.Name)
			}
		case EventRefreshed, EventAdopted:
			if !isHeld || ev.Generation != index || h.revoked {
				return fmt.Errorf("%v %q token %d generation %d at index %d (held %v, revoked %v)",
					ev.Kind, ev.Name, ev.Token, ev.Generation, index, isHeld, h.revoked)
			}
		case EventRevoking:
			if !isHeld || h.revoked {
				return fmt.Errorf("revoking %q token %d (held %v, revoked %v)", ev.Name, ev.Token, isHeld, h.revoked)
			}
			h.revoked = true
			held[ev.Token] = h
		case EventProclaimed:
			if !isHeld || h.revoked || m.typ[ev.Name] != fsmpb.LockType_LOCK_TYPE_ELECTION {
				return fmt.Errorf("proclaimed %q token %d (held %v, revoked %v, type %s)", ev.Name, ev.Token, isHeld, h.revoked, m.typ[ev.Name])
			}
			h.value = ev.Value
			held[ev.Token] = h
		}
	}
	return nil
}

// admits checks a grant against the leases the model holds (I1 with many
// holders): alone on a mutex or an election, on a slot no other permit
// has, a writer alone, a reader beside readers only; and of the type the
// name is held as.
func (m *eventModel) admits(ev Event) error {
	held := m.holders[ev.Name]
	if len(held) > 0 && m.typ[ev.Name] != ev.Type {
		return fmt.Errorf("granted %q as %s while held as %s", ev.Name, ev.Type, m.typ[ev.Name])
	}
	for tok, h := range held {
		switch {
		case ev.Type == fsmpb.LockType_LOCK_TYPE_SEMAPHORE && h.slot == ev.Slot:
			return fmt.Errorf("granted %q slot %d, which token %d holds", ev.Name, ev.Slot, tok)
		case ev.Type == fsmpb.LockType_LOCK_TYPE_READ_WRITE && (ev.Mode == fsmpb.Mode_MODE_WRITE || h.mode == fsmpb.Mode_MODE_WRITE):
			return fmt.Errorf("granted %q as %s beside token %d's %s", ev.Name, ev.Mode, tok, h.mode)
		case ev.Type != fsmpb.LockType_LOCK_TYPE_SEMAPHORE && ev.Type != fsmpb.LockType_LOCK_TYPE_READ_WRITE:
			return fmt.Errorf("granted %q (token %d) while token %d holds it", ev.Name, ev.Token, tok)
		}
	}
	return nil
}

// check compares the model's holders with the state.
func (m *eventModel) check(s *State) error {
	for _, name := range propNames {
		li := s.Lock(name)
		state := map[uint64]modelLease{}
		if li.Held {
			state[li.Token] = modelLease{mode: li.Mode, slot: li.Slot, value: li.Value, revoked: li.Revoked}
		}
		for _, h := range li.Holders {
			state[h.Token] = modelLease{mode: h.Mode, slot: h.Slot, value: h.Value, revoked: h.Revoked}
		}
		held := m.holders[name]
		if len(held) == 0 {
			held = map[uint64]modelLease{}
		}
		if !maps.Equal(state, held) || li.Held && m.typ[name] != li.Type {
			return fmt.Errorf("lock %q: state says %v (%s), events say %v (%s)", name, state, li.Type, held, m.typ[name])
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
		// Ignorable and UNSUPPORTED entries change nothing, not even the
		// floor (a level-5 command at level 4 can meet one).
		if f := tokenFloorOf(a); f != 0 && cmd.GetOp() != nil && !unsupported {
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
