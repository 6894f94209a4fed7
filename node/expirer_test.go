package node

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// expiryProposer answers proposals of expiries: the first fail of them
// fail, the rest succeed.
type expiryProposer struct {
	mu    sync.Mutex
	fail  int
	calls []*fsmpb.Command
	ok    chan struct{} // closed at the first success
}

func (p *expiryProposer) propose(cmd *fsmpb.Command) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, cmd)
	if len(p.calls) <= p.fail {
		return errors.New("injected: leader loop stalled")
	}
	if len(p.calls) == p.fail+1 {
		close(p.ok)
	}
	return nil
}

// TestExpireLoop_RetriesFailedExpiry (issue 11, item 3): an expiry whose
// proposal fails is proposed again until it commits, while this node
// leads; the session stays unrenewable meanwhile.
func TestExpireLoop_RetriesFailedExpiry(t *testing.T) {
	e := newExpirer(0)
	st := fsm.New()
	_, _, err := st.Apply(1, &fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
		Req: &fsmpb.Request{Session: 42}, TtlNs: int64(50 * time.Millisecond),
	}}})
	require.NoError(t, err)
	e.lead(st)
	defer e.follow()

	p := &expiryProposer{fail: 3, ok: make(chan struct{})}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		expireLoop(stop, e, p.propose, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() { close(stop); <-done }()

	select {
	case <-p.ok:
	case <-time.After(15 * time.Second):
		p.mu.Lock()
		defer p.mu.Unlock()
		t.Fatalf("the expiry was proposed %d times and never again after its failures", len(p.calls))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	require.Len(t, p.calls, 4)
	for _, cmd := range p.calls {
		assert.Equal(t, uint64(42), cmd.GetExpireSession().GetSession())
	}
	assert.Equal(t, renewGone, e.resetSession(42), "keep-alives stay refused once the expiry is decided")
}

// TestExpireLoop_DropsExpiryNoLongerDue: a failed expiry is not retried
// once this node stops leading (the next leader re-arms every timer).
func TestExpireLoop_DropsExpiryNoLongerDue(t *testing.T) {
	e := newExpirer(0)
	st := fsm.New()
	_, _, err := st.Apply(1, &fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
		Req: &fsmpb.Request{Session: 7}, TtlNs: int64(10 * time.Millisecond),
	}}})
	require.NoError(t, err)
	e.lead(st)
	<-e.wake
	due := e.take()
	require.Len(t, due, 1)
	e.follow()
	assert.False(t, e.failed(due[0]), "an expiry of a leader that stepped down is not due")
	assert.Empty(t, e.take())
}

// TestExpirer_NewLeaderEndsRevokedLease: a new leader arms the grace of
// every revoked lease of the state (State.Revoked), so a revoke whose
// leader stepped down before the grace passed still ends: EndRevoked for
// that lease is proposed once the grace (the holder session's TTL) has
// passed from the new leader's start.
func TestExpirer_NewLeaderEndsRevokedLease(t *testing.T) {
	st := fsm.New()
	index := uint64(0)
	apply := func(cmd *fsmpb.Command) *fsmpb.Result {
		t.Helper()
		index++
		res, _, err := st.Apply(index, cmd)
		require.NoError(t, err)
		return res
	}
	apply(&fsmpb.Command{Op: &fsmpb.Command_SetProtocol{SetProtocol: &fsmpb.SetProtocol{Level: 2}}})
	apply(&fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
		Req: &fsmpb.Request{Session: 9}, TtlNs: int64(30 * time.Millisecond),
	}}})
	granted := apply(&fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
		Req: &fsmpb.Request{Session: 9, Seq: 1}, Name: "r", TtlNs: int64(time.Hour),
	}}})
	require.Equal(t, fsmpb.Code_CODE_GRANTED, granted.GetCode())
	revoked := apply(&fsmpb.Command{Op: &fsmpb.Command_Revoke{Revoke: &fsmpb.Revoke{
		Req: &fsmpb.Request{Session: 9, Seq: 2}, Name: "r", Token: granted.GetToken(),
	}}})
	require.Equal(t, fsmpb.Code_CODE_OK, revoked.GetCode())

	e := newExpirer(0)
	e.lead(st)
	defer e.follow()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case <-e.wake:
		case <-deadline:
			t.Fatal("the new leader never ended the revoked lease")
		}
		for _, x := range e.take() {
			if end := x.cmd.GetEndRevoked(); end != nil {
				assert.Equal(t, "r", end.GetName())
				assert.Equal(t, granted.GetToken(), end.GetToken())
				return
			}
		}
	}
}
