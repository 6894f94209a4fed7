package redis

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/quorumlock/quorumlock/lock"
)

const (
	// opTimeout bounds script calls that must not be abandoned half-way
	// (the Acquire path, withdrawals, Close's releases).
	opTimeout = 5 * time.Second
	// minRetry and maxRetry bound a waiter's fallback backoff (the cap is
	// also at most SessionTTL/3, so that its heartbeat stays fresh).
	minRetry = 20 * time.Millisecond
	maxRetry = time.Second
	// subscribeWait bounds how long an Acquire waits for the wake-up
	// subscription before it queues (it falls back to backoff without it).
	subscribeWait = time.Second
)

// instance is a lock.Locker on one Redis primary: the whole Locker in the
// default mode, one of the N parts of a Redlock Locker.
type instance struct {
	cfg        Config
	rdb        goredis.UniversalClient
	owned      bool // rdb was created by newInstance; Close closes it
	id         string
	log        *slog.Logger
	epochKey   string
	wakePrefix string
	retryCap   time.Duration
	opTimeout  time.Duration // bounds calls made on a detached context

	stop     chan struct{}      // closed by Close
	bgCtx    context.Context    // cancelled by Close, for background calls
	bgCancel context.CancelFunc //
	bg       sync.WaitGroup     // the renewer and the subscriber
	calls    sync.WaitGroup     // public calls in progress
	ps       *goredis.PubSub
	subReady chan struct{} // closed once the wake-up channel is subscribed

	mu      sync.Mutex
	closed  bool
	epoch   string // "" until the first script answered
	fresh   uint64 // numbers fresh epoch values
	seq     uint64 // numbers claims
	leases  map[*lease]struct{}
	waiters map[string]chan struct{} // claim ID → wake-up
	stale   []staleLease             // ended by their deadline; to delete in the store
}

// staleLease is a lease that ended by its local deadline and may still
// exist in the store (a renewal delivered late can extend it there).
type staleLease struct {
	name  string
	token uint64
	tries int
}

var _ lock.Locker = (*instance)(nil)

// newLockerID returns a random ID for a Locker: its claims are "ID/n" and
// its wake-up channel is "<prefix>wake:ID".
func newLockerID() string { return strings.ToLower(crand.Text()[:16]) }

// newInstance returns a Locker on the primary of cfg.Addr or cfg.Client
// (cfg validated, defaults applied). It starts the renewer and the
// subscriber; it does not wait for the server.
func newInstance(cfg Config, id string) *instance {
	c := &instance{
		cfg:        cfg,
		rdb:        cfg.Client,
		id:         id,
		log:        cfg.Logger,
		epochKey:   cfg.Prefix + "epoch",
		wakePrefix: cfg.Prefix + "wake:",
		retryCap:   min(maxRetry, cfg.SessionTTL/3),
		opTimeout:  opTimeout,
		stop:       make(chan struct{}),
		subReady:   make(chan struct{}),
		leases:     make(map[*lease]struct{}),
		waiters:    make(map[string]chan struct{}),
	}
	if c.rdb == nil {
		c.rdb = goredis.NewClient(&goredis.Options{
			Addr:                     cfg.Addr,
			ContextTimeoutEnabled:    true,
			DisableIdentity:          true,
			DialerRetries:            1, // our callers retry; a dead primary must fail fast (Redlock)
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		})
		c.owned = true
	}
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	c.ps = c.rdb.Subscribe(c.bgCtx) // no channel yet: no I/O
	c.bg.Add(2)
	go c.subscribeLoop()
	go c.renewLoop()
	return c
}

// enter registers a public call; it fails once Close has begun.
func (c *instance) enter() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return lock.ErrClosed
	}
	c.calls.Add(1)
	return nil
}

func (c *instance) keys(name string) []string {
	p := c.cfg.Prefix
	return []string{c.epochKey, p + "lease:" + name, p + "fence:" + name, p + "queue:" + name, p + "beats:" + name, p + "qseq:" + name}
}

func (c *instance) newClaim() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	return c.id + "/" + strconv.FormatUint(c.seq, 10)
}

// epochArgs returns the epoch the Locker believes in and a fresh value to
// store if the store has none.
func (c *instance) epochArgs() (epoch, fresh string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fresh++
	return c.epoch, c.id + "." + strconv.FormatUint(c.fresh, 10)
}

// run runs a script on name's keys and returns its answer. An epoch
// mismatch is handled (adopted; a reset ends every lease) and the script is
// run again.
func (c *instance) run(ctx context.Context, s *goredis.Script, name string, args ...any) ([]any, error) {
	for attempt := 0; ; attempt++ {
		epoch, fresh := c.epochArgs()
		argv := append([]any{epoch, fresh, c.wakePrefix}, args...)
		v, err := s.Run(ctx, c.rdb, c.keys(name), argv...).Slice()
		if err != nil {
			return nil, err
		}
		if len(v) == 0 {
			return nil, fmt.Errorf("%w: an empty array", ErrUnexpectedReply)
		}
		status, _ := v[0].(string)
		if status != "epoch" {
			return v, nil
		}
		if attempt == 2 || len(v) < 2 {
			return nil, fmt.Errorf("%w: the epoch key keeps changing", ErrUnexpectedReply)
		}
		cur, _ := v[1].(string)
		c.adoptEpoch(epoch, cur)
	}
}

// adoptEpoch records the store's epoch cur, learnt by a call made with
// epoch old. If the Locker had an epoch, the store lost its data: every
// lease ends, since tokens may now repeat.
func (c *instance) adoptEpoch(old, cur string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != old || cur == "" {
		return // already adopted by a concurrent call
	}
	c.epoch = cur
	if old == "" {
		return
	}
	c.log.Warn("redis lock: store reset detected, ending all leases", "leases", len(c.leases))
	why := fmt.Errorf("%w: %w: the epoch key changed (Redis restarted without its data?); tokens may repeat", lock.ErrLost, ErrStoreReset)
	for l := range c.leases {
		l.end(why)
	}
}

// detached returns a context for a call that must not be abandoned half-way
// when ctx ends, bounded by c.opTimeout.
func (c *instance) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), c.opTimeout)
}

// ctxErr returns err, wrapped with ctx's error if ctx has ended, so that
// errors.Is(err, ctx.Err()) holds for errors caused by ctx.
func ctxErr(ctx context.Context, op, name string, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("redis lock: %s %q: %w (%w)", op, name, ctx.Err(), err)
	}
	return fmt.Errorf("redis lock: %s %q: %w", op, name, err)
}

// retryable reports whether a failed script call may succeed if made again:
// network errors and the server's transient states, not script errors.
func retryable(err error) bool {
	if errors.Is(err, goredis.ErrClosed) {
		return false // the caller closed its go-redis client
	}
	var rerr goredis.Error
	if !errors.As(err, &rerr) {
		return true // network, timeout, pool
	}
	for _, p := range []string{"LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"} {
		if goredis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// attempt is the answer of one acquire script.
type attempt struct {
	granted bool
	token   uint64
	pttl    time.Duration // granted: the lease's TTL left; held: the holder's
	held    bool          // a lease holds the name (else free, but a claim is ahead)
	holder  string        // held: the holder's claim
}

func (c *instance) tryOnce(ctx context.Context, name, claim string, o lock.Options, mode string) (attempt, error) {
	px := c.cfg.SessionTTL
	if o.TTL > 0 {
		px = o.TTL
	}
	v, err := c.run(ctx, acquireScript, name, claim, o.Owner, px.Milliseconds(), o.TTL.Milliseconds(), mode, c.cfg.SessionTTL.Milliseconds())
	if err != nil {
		return attempt{}, err
	}
	if len(v) < 3 {
		return attempt{}, fmt.Errorf("%w: acquire answered %v", ErrUnexpectedReply, v)
	}
	n1, ok1 := v[1].(int64)
	n2, ok2 := v[2].(int64)
	switch v[0] {
	case "granted":
		if !ok1 || !ok2 || n1 <= 0 {
			return attempt{}, fmt.Errorf("%w: acquire answered %v", ErrUnexpectedReply, v)
		}
		return attempt{granted: true, token: uint64(n1), pttl: time.Duration(n2) * time.Millisecond}, nil
	case "held":
		a := attempt{held: true, pttl: time.Duration(n1) * time.Millisecond}
		if len(v) > 3 {
			a.holder, _ = v[3].(string)
		}
		return a, nil
	case "queued":
		return attempt{}, nil
	}
	return attempt{}, fmt.Errorf("%w: acquire answered %v", ErrUnexpectedReply, v)
}

// Acquire implements lock.Locker: first come, first served.
func (c *instance) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redis lock: acquire %q: %w", name, err)
	}

	claim := c.newClaim()
	wake := make(chan struct{}, 1)
	c.setWaiter(claim, wake)
	defer c.setWaiter(claim, nil)

	queued := false // whether a call may have queued the claim
	backoff := minRetry
	for {
		if !queued {
			c.waitSubscribed(ctx)
			if err := ctx.Err(); err != nil { // nothing queued yet
				return nil, fmt.Errorf("redis lock: acquire %q: %w", name, err)
			}
		}
		sent := time.Now()
		callCtx, cancel := c.detached(ctx)
		res, err := c.tryOnce(callCtx, name, claim, o, "wait")
		cancel()
		queued = true
		switch {
		case err == nil && res.granted:
			lease, err := c.grant(ctx, name, claim, o, res, sent)
			if err == nil {
				return lease, nil
			}
			if !errors.Is(err, errLateGrant) {
				return nil, err
			}
			c.log.Debug("redis lock: a grant answered too late was given back", "name", name)
			backoff = minRetry
		case err != nil && !retryable(err):
			c.withdraw(ctx, name, claim)
			return nil, ctxErr(ctx, "acquire", name, err)
		case err != nil:
			c.log.Debug("redis lock: acquire attempt failed", "name", name, "error", err)
		}

		wait := jitter(backoff)
		backoff = min(2*backoff, c.retryCap)
		if err == nil && res.held && res.pttl > 0 {
			wait = min(wait, res.pttl+time.Millisecond) // the holder's lease runs out then
		}
		if ctx.Err() != nil {
			c.withdraw(ctx, name, claim)
			return nil, fmt.Errorf("redis lock: acquire %q: %w", name, ctx.Err())
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			c.withdraw(ctx, name, claim)
			return nil, fmt.Errorf("redis lock: acquire %q: %w", name, ctx.Err())
		case <-c.stop:
			timer.Stop()
			c.withdraw(ctx, name, claim)
			return nil, fmt.Errorf("redis lock: acquire %q: %w", name, lock.ErrClosed)
		case <-wake:
			timer.Stop()
			backoff = minRetry
		case <-timer.C:
		}
	}
}

// jitter returns d ± 25 %.
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}

// waitSubscribed waits (briefly) until the wake-up channel is subscribed, so
// that a queued claim does not miss its wake-up.
func (c *instance) waitSubscribed(ctx context.Context) {
	select {
	case <-c.subReady:
		return
	default:
	}
	t := time.NewTimer(subscribeWait)
	defer t.Stop()
	select {
	case <-c.subReady:
	case <-ctx.Done():
	case <-c.stop:
	case <-t.C:
	}
}

// withdraw removes claim from name's queue and releases a grant that raced
// the withdrawal. Best effort: if Redis does not answer, the claim is pruned
// by its heartbeat deadline and a raced grant expires.
func (c *instance) withdraw(ctx context.Context, name, claim string) {
	callCtx, cancel := c.detached(ctx)
	defer cancel()
	if _, err := c.run(callCtx, withdrawScript, name, claim); err != nil {
		c.log.Warn("redis lock: withdrawing a claim failed; it will be pruned", "name", name, "claim", claim, "error", err)
	}
}

// grant turns a granted attempt, sent at sent, into a lease; if Close has
// begun, the grant is given back instead. A grant whose answer took so long
// that less than half its TTL is left locally (a store that just came back)
// is renewed first, so that the caller does not get a lease that ends at
// once; if that fails, it is given back and errLateGrant returned.
func (c *instance) grant(ctx context.Context, name, claim string, o lock.Options, a attempt, sent time.Time) (*lease, error) {
	l := &lease{c: c, name: name, claim: claim, token: a.token, ttl: o.TTL, px: c.cfg.SessionTTL}
	if o.TTL > 0 {
		l.px = o.TTL
	}
	margin := driftMargin(l.px)
	l.deadline = sent.Add(min(l.px, a.pttl) - margin)
	for try := 0; time.Until(l.deadline) < l.px/2; try++ {
		if try == 2 {
			c.withdraw(ctx, name, claim)
			return nil, errLateGrant
		}
		renewSent := time.Now()
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.px/2)
		v, err := c.run(callCtx, renewScript, name, a.token, l.px.Milliseconds())
		cancel()
		switch {
		case err != nil:
		case v[0] == "ok":
			l.deadline = renewSent.Add(l.px - margin)
		default: // gone: it expired meanwhile
			return nil, errLateGrant
		}
	}
	l.ctx, l.cancel = context.WithCancelCause(context.Background())
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.withdraw(ctx, name, claim)
		return nil, fmt.Errorf("redis lock: %q: %w", name, lock.ErrClosed)
	}
	l.timer = time.AfterFunc(time.Until(l.deadline), l.onDeadline)
	c.leases[l] = struct{}{}
	c.mu.Unlock()
	return l, nil
}

// TryAcquire implements lock.Locker. It returns lock.ErrHeld also when the
// name is momentarily free but another claim is queued ahead.
func (c *instance) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redis lock: try-acquire %q: %w", name, err)
	}
	claim := c.newClaim()
	sent := time.Now()
	callCtx, cancel := c.detached(ctx)
	res, err := c.tryOnce(callCtx, name, claim, o, "try")
	cancel()
	switch {
	case err != nil:
		if retryable(err) {
			// The grant may have happened with its reply lost.
			c.withdraw(ctx, name, claim)
		}
		return nil, ctxErr(ctx, "try-acquire", name, err)
	case res.granted:
		lease, err := c.grant(ctx, name, claim, o, res, sent)
		if err != nil {
			return nil, fmt.Errorf("redis lock: try-acquire %q: %w", name, err)
		}
		return lease, nil
	}
	return nil, fmt.Errorf("redis lock: try-acquire %q: %w", name, lock.ErrHeld)
}

// Inspect implements lock.Locker. It is linearizable: one script on the
// primary reads lease and queue (and prunes dead waiters).
func (c *instance) Inspect(ctx context.Context, name string) (lock.Info, error) {
	if err := lock.ValidateName(name); err != nil {
		return lock.Info{}, err
	}
	if err := c.enter(); err != nil {
		return lock.Info{}, err
	}
	defer c.calls.Done()
	si, err := c.inspect(ctx, name)
	return si.Info, err
}

// instanceInfo is what one primary knows about a name.
type instanceInfo struct {
	lock.Info
	claim string // the holder's claim ID
	fence uint64 // the Redlock token recorded with the lease, 0 if none
}

func (c *instance) inspect(ctx context.Context, name string) (instanceInfo, error) {
	v, err := c.run(ctx, inspectScript, name)
	if err != nil {
		return instanceInfo{}, ctxErr(ctx, "inspect", name, err)
	}
	si := instanceInfo{Info: lock.Info{Name: name}}
	bad := fmt.Errorf("%w: inspect answered %v", ErrUnexpectedReply, v)
	if len(v) < 2 {
		return instanceInfo{}, bad
	}
	n, ok := v[1].(int64)
	if !ok {
		return instanceInfo{}, bad
	}
	si.Waiters = int(n)
	switch v[0] {
	case "free":
		return si, nil
	case "held":
		if len(v) < 8 {
			return instanceInfo{}, bad
		}
		token, ok1 := v[2].(int64)
		owner, ok2 := v[3].(string)
		kind, ok3 := v[4].(int64)
		pttl, ok4 := v[5].(int64)
		claim, ok5 := v[6].(string)
		fence, ok6 := v[7].(int64)
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
			return instanceInfo{}, bad
		}
		si.Held, si.Token, si.Owner = true, uint64(token), owner
		si.claim, si.fence = claim, uint64(fence)
		if kind > 0 && pttl > 0 {
			si.ExpiresIn = time.Duration(pttl) * time.Millisecond
		}
		return si, nil
	}
	return instanceInfo{}, bad
}

// Close implements lock.Locker: blocked calls return lock.ErrClosed (their
// claims withdrawn), every lease ends with lock.ErrReleased and is deleted
// in Redis, and the go-redis client is closed if New created it.
func (c *instance) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	c.mu.Unlock()

	c.calls.Wait()
	c.bgCancel()
	psErr := c.ps.Close()
	c.bg.Wait()

	c.mu.Lock()
	leases := c.stale // ended by their deadline, maybe still in the store
	for l := range c.leases {
		leases = append(leases, staleLease{name: l.name, token: l.token})
		l.end(fmt.Errorf("%w: its Locker was closed", lock.ErrReleased))
	}
	c.stale = nil
	c.mu.Unlock()

	var errs []error
	if len(leases) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), c.opTimeout)
		errs = append(errs, c.releaseAll(ctx, leases))
		cancel()
	}
	if psErr != nil && !errors.Is(psErr, goredis.ErrClosed) {
		errs = append(errs, psErr)
	}
	if c.owned {
		errs = append(errs, c.rdb.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("redis lock: close: %w", err)
	}
	return nil
}

// releaseAll deletes leases in Redis in one pipeline (Close).
func (c *instance) releaseAll(ctx context.Context, leases []staleLease) error {
	if err := releaseScript.Load(ctx, c.rdb).Err(); err != nil {
		return err
	}
	pipe := c.rdb.Pipeline()
	for _, l := range leases {
		epoch, fresh := c.epochArgs()
		releaseScript.EvalSha(ctx, pipe, c.keys(l.name), epoch, fresh, c.wakePrefix, l.token)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// wakeWaiter hands a wake-up message to the waiter of claim, if it is ours.
func (c *instance) wakeWaiter(claim string) {
	c.mu.Lock()
	ch := c.waiters[claim]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// subscribeLoop keeps the Locker's wake-up channel subscribed and hands
// messages to waiters. go-redis resubscribes after a reconnect; messages
// published meanwhile are lost (waiters fall back to backoff).
func (c *instance) subscribeLoop() {
	defer c.bg.Done()
	_ = c.ps.Subscribe(c.bgCtx, c.wakePrefix+c.id) // recorded even if it fails; Receive reconnects
	backoff := minRetry
	ready := false
	for {
		msg, err := c.ps.Receive(c.bgCtx)
		if err != nil {
			select {
			case <-c.stop:
				return
			default:
			}
			c.log.Debug("redis lock: wake-up subscription", "error", err)
			t := time.NewTimer(jitter(backoff))
			select {
			case <-c.stop:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxRetry)
			continue
		}
		backoff = minRetry
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" && !ready {
				ready = true
				close(c.subReady)
			}
		case *goredis.Message:
			c.wakeWaiter(m.Payload)
		}
	}
}

// setWaiter registers ch as the wake-up of claim (nil: unregisters); the
// Redlock mode registers one channel with every primary's instance.
func (c *instance) setWaiter(claim string, ch chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch == nil {
		delete(c.waiters, claim)
		return
	}
	c.waiters[claim] = ch
}

// abandon ends l locally, if it has not ended, and has the renewer delete
// it in the store (by token): a Redlock lease that lost its majority gives
// up the rest.
func (c *instance) abandon(l *lease) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.ctx.Err() != nil {
		return
	}
	l.end(fmt.Errorf("%w: the Redlock lease lost its majority", lock.ErrLost))
	c.stale = append(c.stale, staleLease{name: l.name, token: l.token})
}

// giveBack deletes the lease of claim if it holds name, keeping the claim's
// place in the queue (Redlock: a vote won here but lost on the majority).
func (c *instance) giveBack(ctx context.Context, name, claim string) {
	callCtx, cancel := c.detached(ctx)
	defer cancel()
	if _, err := c.run(callCtx, givebackScript, name, claim); err != nil {
		c.log.Debug("redis lock: giving back a grant failed; it will expire", "name", name, "claim", claim, "error", err)
	}
}
