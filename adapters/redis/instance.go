package redis

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
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
	gate // its mu guards the fields from epoch on

	cfg        Config
	rdb        goredis.UniversalClient
	owned      bool // rdb was created by newInstance; Close closes it
	id         string
	log        *slog.Logger
	epochKey   string
	wakePrefix string
	retryCap   time.Duration
	opTimeout  time.Duration // bounds calls made on a detached context
	sink       metrics.Sink  // Config.Metrics, or metrics.Nop
	part       bool          // a per-primary part of a Redlock Locker (see logEnd)

	// haltCtx is cancelled when a Shutdown's ctx ends (or Shutdown is
	// over): it cuts off the calls made on a detached context. bgCtx, its
	// child, is cancelled when Shutdown stops the background work.
	haltCtx  context.Context
	halt     context.CancelFunc
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup // the renewer and the subscriber
	pending  sync.WaitGroup // background calls (goPending)
	ps       *goredis.PubSub
	subReady chan struct{} // closed once the wake-up channel is subscribed

	closeClient sync.Once // closes rdb if owned, once (Shutdown, or halt)
	clientErr   error     // what closing rdb returned

	policyOK     atomic.Bool // the store reported maxmemory-policy noeviction (checkPolicy)
	policyWarned atomic.Bool // a refusal by checkPolicy was logged

	epoch   string // "" until the first script answered
	fresh   uint64 // numbers fresh epoch values
	seq     uint64 // numbers claims
	leases  map[*lease]struct{}
	waiters map[string]chan struct{} // claim ID → wake-up
	stale   []staleLease             // ended by their deadline; to delete in the store
	halted  bool                     // Shutdown waits for pending: no more background calls
	lapsed  bool                     // a session lease reached its deadline since the store last answered a renewal
	renewed error                    // why the last renewal round failed, nil if it reached the store
}

// staleLease is a lease that ended by its local deadline and may still
// exist in the store (a renewal delivered late can extend it there).
type staleLease struct {
	name  string
	token uint64
	claim string
	tries int
	until time.Time // tried at least until then: the store's copy may live that long
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
		sink:       metrics.OrNop(cfg.Metrics),
		gate:       gate{stop: make(chan struct{}), idle: make(chan struct{})},
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
	c.haltCtx, c.halt = context.WithCancel(context.Background())
	c.bgCtx, c.bgCancel = context.WithCancel(c.haltCtx)
	c.ps = c.rdb.Subscribe(c.bgCtx) // no channel yet: no I/O
	c.bg.Add(2)
	go c.subscribeLoop()
	go c.renewLoop()
	c.sink.Sessions(+1)
	return c
}

func (c *instance) keys(name string) []string {
	p := c.cfg.Prefix
	return []string{c.epochKey, p + "lease:" + name, p + "fence:" + name, p + "queue:" + name, p + "beats:" + name, p + "qseq:" + name, p + "claims:" + name, p + "held:" + name}
}

func (c *instance) newClaim() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	return claimID(c.id, c.seq)
}

// epochArgs returns the epoch the Locker believes in and a fresh value to
// store if the store has none.
func (c *instance) epochArgs() (epoch, fresh string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fresh++
	return c.epoch, c.id + "." + strconv.FormatUint(c.fresh, 10)
}

// run runs a script on name's keys and returns its answer (runKeys).
func (c *instance) run(ctx context.Context, s *goredis.Script, name string, args ...any) ([]any, error) {
	return c.runKeys(ctx, s, c.keys(name), args...)
}

// runKeys runs a script on keys and returns its answer, once the store's
// eviction policy has been found safe (checkPolicy). An epoch mismatch is
// handled (adopted; a reset ends every lease) and the script is run again.
func (c *instance) runKeys(ctx context.Context, s *goredis.Script, keys []string, args ...any) ([]any, error) {
	if err := c.checkPolicy(ctx); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		epoch, fresh := c.epochArgs()
		argv := append([]any{epoch, fresh, c.wakePrefix}, args...)
		v, err := s.Run(ctx, c.rdb, keys, argv...).Slice()
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
// when ctx ends, bounded by c.opTimeout (detachedFor).
func (c *instance) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return c.detachedFor(ctx, c.opTimeout)
}

// detachedFor returns a context for a call that must not be abandoned
// half-way when ctx ends, bounded by d and cut off when Shutdown halts.
func (c *instance) detachedFor(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	stop := context.AfterFunc(c.haltCtx, cancel)
	return dctx, func() {
		stop()
		cancel()
	}
}

// goPending runs fn on a goroutine counted in pending, unless Shutdown
// already waits for them (then it reports false and fn does not run: the
// store's expiry does what fn would have done); c.mu held. Counting under
// c.mu, before Shutdown sets halted, is what lets a call that Shutdown did
// not wait for start one safely.
func (c *instance) goPendingLocked(fn func()) bool {
	if c.halted {
		return false
	}
	c.pending.Add(1)
	go func() {
		defer c.pending.Done()
		fn()
	}()
	return true
}

// ctxErr returns err, wrapped with ctx's error if ctx has ended, so that
// errors.Is(err, ctx.Err()) holds for errors caused by ctx.
func ctxErr(ctx context.Context, op, name string, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("redis lock: %s %q: %w (%w)", op, name, ctx.Err(), err)
	}
	return fmt.Errorf("redis lock: %s %q: %w", op, name, err)
}

// callErr is the error of a call that failed with err: it wraps
// lock.ErrNoQuorum if the store could not be reached (err is retryable:
// refused, timed out, reset), and ctx's error if ctx has ended, and keeps
// err, the last cause, in the message.
func callErr(ctx context.Context, op, name string, err error) error {
	if retryable(err) && !errors.Is(err, lock.ErrNoQuorum) {
		err = fmt.Errorf("%w: %w", lock.ErrNoQuorum, causes(ctx, err))
	}
	return ctxErr(ctx, op, name, err)
}

// cutErr is the error of a call (op, on name) that failed with err. If
// ctx has ended and err may be ctx's doing (a call cut off by ctx, a
// pause), a PING (ping) tells: answered, the error is ctx's alone (R5: ctx
// ended the call, not the store); not, it wraps lock.ErrNoQuorum and why.
// Else it is callErr's.
func (c *instance) cutErr(ctx context.Context, op, name string, err error) error {
	if ctx.Err() != nil && retryable(err) {
		if perr := c.ping(ctx); perr != nil {
			return callErr(ctx, op, name, perr)
		}
		return fmt.Errorf("redis lock: %s %q: %w", op, name, ctx.Err())
	}
	return callErr(ctx, op, name, err)
}

// causes joins the errors of the parts of a call (per primary, or one
// detached call) as the cause of its error. A part that ended by a
// context error other than the caller's ctx's own — a timeout of the
// adapter's own (callTimeout, opTimeout) — keeps only its message:
// errors.Is(err, context.DeadlineExceeded) must hold only when the
// caller's ctx ran past its deadline, not when it was cancelled or is
// still live.
func causes(ctx context.Context, errs ...error) error {
	errs = slices.Clone(errs)
	for i, err := range errs {
		own := ctx.Err() != nil && errors.Is(err, ctx.Err())
		if !own && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			errs[i] = errors.New(err.Error())
		}
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// transient are the prefixes of the server's errors that asking again may
// cure: it is loading, busy, a replica, or out of connections.
var transient = []string{"LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "max number of clients"}

// retryable reports whether a failed script call may succeed if made again:
// the store could not be reached (network errors, timeouts, a closed
// connection, an exhausted pool) or is in a transient state. Everything
// else is not: the server's refusals (OOM, MISCONF, NOAUTH, NOPERM,
// WRONGTYPE, script errors), an answer this version does not understand
// (ErrUnexpectedReply) and errors nobody classified, so that no caller
// spins on them until its ctx ends.
func retryable(err error) bool {
	if err == nil || errors.Is(err, goredis.ErrClosed) || errors.Is(err, ErrUnexpectedReply) {
		return false // ErrClosed: the caller closed its go-redis client
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		for _, p := range transient {
			if goredis.HasErrorPrefix(err, p) {
				return true
			}
		}
		return false
	}
	var nerr net.Error
	for _, e := range []error{errNoAnswer, io.EOF, io.ErrUnexpectedEOF, context.DeadlineExceeded, context.Canceled,
		goredis.ErrPoolTimeout, goredis.ErrPoolExhausted, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE} {
		if errors.Is(err, e) {
			return true
		}
	}
	return errors.As(err, &nerr)
}
