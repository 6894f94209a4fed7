package zookeeper

import (
	"context"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
)

// Test hooks.

var (
	EscapeName   = escapeName
	UnescapeName = unescapeName
)

// Record is a claim node's data, decoded (DESIGN.md, "Node data, format
// 2" and "format 3"); Format is what DecodeRecord read (EncodeRecord
// writes format 3, with Slot, if Format is 3, else format 2).
type Record struct {
	Format    int
	TTL       time.Duration
	State     int // 0 queued, 1 granted, 2 revoked
	Granted   int64
	Adoptions uint32
	Timeout   time.Duration
	Holder    string
	Node      string
	Owner     string
	Slot      int // a permit's, in format 3
}

// Claim states of a Record.
const (
	StateQueued  = int(stateQueued)
	StateGranted = int(stateGranted)
	StateRevoked = int(stateRevoked)
)

func EncodeRecord(r Record) []byte {
	return encodeData(nodeData{
		ttl: r.TTL, state: claimState(r.State), granted: r.Granted, adoptions: r.Adoptions,
		timeout: r.Timeout, holder: r.Holder, node: r.Node, owner: r.Owner,
		slotted: r.Format == 3, slot: uint16(r.Slot),
	})
}

func DecodeRecord(b []byte) (Record, error) {
	d, err := decodeData(b)
	return Record{
		Format: int(d.format), TTL: d.ttl, State: int(d.state), Granted: d.granted, Adoptions: d.adoptions,
		Timeout: d.timeout, Holder: d.holder, Node: d.node, Owner: d.owner, Slot: int(d.slot),
	}, err
}

// ClaimData is the data l writes into the node of a new claim.
func ClaimData(l *Locker, ttl time.Duration, owner string) []byte {
	c, err := l.newClaim("x", typeMutex, false, lock.Options{TTL: ttl, Owner: owner})
	if err != nil {
		panic(err)
	}
	return encodeData(c.meta)
}

// HolderID is the holder ID l writes into its nodes (Info.Holder).
func HolderID(l *Locker) string { return l.id }

var (
	EncodeCursor = encodeCursor
	DecodeCursor = decodeCursor
)

// Conn is the Locker's connection.
func Conn(l *Locker) *zk.Conn { return l.conn }

// Dir is the directory of a lock name.
func Dir(l *Locker, name string) string { return l.dir(name) }

// ChildType parses a child's name: whether it is a claim, and the type
// its id carries ("a mutex", "an election", "a semaphore of limit 3", "a
// read-write lock (reader)", "a type this version does not know").
func ChildType(name string) (string, bool) {
	c, ok := parseChild(name)
	switch {
	case c.typ == typeRW && c.write:
		return c.typ.String() + " (writer)", ok
	case c.typ == typeRW:
		return c.typ.String() + " (reader)", ok
	}
	return c.typ.String(), ok
}

// ChildPrefix is the name prefix (without the sequence) of a claim node
// with the given GUID.
func ChildPrefix(guid string) string { return protectedPrefix + guid + lockMarker }

// AcquireAfterLostCreate runs Acquire for a claim with the given GUID as if
// its create had been sent and its reply lost: it skips the create and goes
// straight to the recovery path (list the directory, adopt the node with
// the GUID), then queues as usual. If no node with the GUID exists, the
// claim creates one as after a failed recovery.
// sent is when the lost create was sent (before the node was created).
func AcquireAfterLostCreate(ctx context.Context, l *Locker, name, guid string, sent time.Time, opts ...lock.Option) (lock.Lease, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return nil, err
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer end()
	c, err := l.newClaim(name, typeMutex, false, o)
	if err != nil {
		return nil, err
	}
	c.guid, c.marked = guid, sent
	if _, err := l.recoverCreate(opCtx, c); err != nil {
		return nil, err
	}
	le, err := l.runClaim(opCtx, c, true)
	if err != nil {
		if c.path != "" {
			l.withdraw(c)
		}
		return nil, l.fail(ctx, opCtx, "acquire after lost create", err)
	}
	return le, nil
}

// LeasePath is the node of a lease.
func LeasePath(le lock.Lease) string { return leaseOf(le).path }

// leaseOf is the lease of a lease or a term.
func leaseOf(le lock.Lease) *lease {
	switch t := le.(type) {
	case term:
		return t.lease
	case permit:
		return t.lease
	}
	return le.(*lease)
}

// Orphans is the number of nodes waiting for background deletion.
func Orphans(l *Locker) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.orphans)
}

// SessionTimeout is the session timeout l computes its deadlines with.
func SessionTimeout(l *Locker) time.Duration { return l.sessionTimeout() }

// AcquireAfterRequeue runs Acquire for a claim that had the given GUID and
// lost its node (a TTL claim's node given up, say), as if the create made
// after the requeue had an ambiguous outcome: it requeues the claim, looks
// for its node by GUID (the recovery path), then queues as usual.
func AcquireAfterRequeue(ctx context.Context, l *Locker, name, guid string, opts ...lock.Option) (lock.Lease, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return nil, err
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer end()
	c, err := l.newClaim(name, typeMutex, false, o)
	if err != nil {
		return nil, err
	}
	c.guid = guid
	if err := l.requeue(c); err != nil {
		return nil, err
	}
	c.marked = time.Now() // the send time of the (ambiguous) create
	if _, err := l.recoverCreate(opCtx, c); err != nil {
		return nil, err
	}
	le, err := l.runClaim(opCtx, c, true)
	if err != nil {
		if c.path != "" {
			l.withdraw(c)
		}
		return nil, l.fail(ctx, opCtx, "acquire after requeue", err)
	}
	return le, nil
}

// Reads are the Locker's one-attempt reads, each reporting only its
// error: a test of abandoned calls looks at what the race detector sees,
// not at the values.
func Reads(l *Locker, path, dir string) map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"exists": func(ctx context.Context) error {
			ok, stat, err := l.exists(ctx, path)
			_, _ = ok, stat // read the results, as every caller does
			return err
		},
		"children": func(ctx context.Context) error { _, err := l.children(ctx, dir); return err },
		"readData": func(ctx context.Context) error {
			d, stat, err := l.readData(ctx, path)
			_, _ = d, stat
			return err
		},
	}
}

// CallsRunning is the number of store calls whose goroutines are running,
// abandoned ones included.
func CallsRunning(l *Locker) int64 { return l.running.Load() }

// HandOverAfterShutdownBegan cancels l's base ctx, as Shutdown does first,
// and then hands le over as a call that was granted or adopted at that
// moment would (shutdown.go, unlessClosed).
func HandOverAfterShutdownBegan(l *Locker, le lock.Lease) error {
	l.cancel(lock.ErrClosed)
	return l.unlessClosed(leaseOf(le))
}

// SlotReads is the number of records of children ahead that l's permit
// claims read for their slots.
func SlotReads(l *Locker) int64 { return l.slotReads.Load() }

// SeatReads is the number of reads of an election l's observers made.
func SeatReads(l *Locker) int64 { return l.seatReads.Load() }

// SetWriteHooks sets functions a lease's writes call: acked after a
// SetData was acknowledged and before the lease records it; waits when a
// write finds another holding the lease's write turn. Either may be nil.
func SetWriteHooks(l *Locker, acked, waits func()) {
	l.hooks.p.Store(&hooks{writeAcked: acked, writeWaits: waits})
}

// SetClaimHooks sets functions a claim calls: beforeArm when it has
// listed and is about to arm its watch; slotChosen when a permit claim has
// chosen its slot and is about to write it. Either may be nil.
func SetClaimHooks(l *Locker, beforeArm, slotChosen func()) {
	l.hooks.p.Store(&hooks{beforeArm: beforeArm, slotChosen: slotChosen})
}

// PermitSlotInRecord is the slot the record of a permit's node holds, and
// whether it holds one.
func PermitSlotInRecord(ctx context.Context, l *Locker, p lock.Permit) (int, bool, error) {
	d, _, err := l.readData(ctx, leaseOf(p).path)
	return int(d.slot), d.slotted, err
}
