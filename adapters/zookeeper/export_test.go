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

// EncodeData and DecodeData expose the node data format.
func EncodeData(ttl int64, owner string) []byte {
	return encodeData(nodeData{ttl: time.Duration(ttl) * time.Millisecond, owner: owner})
}

func DecodeData(b []byte) (ttlMillis int64, owner string, err error) {
	d, err := decodeData(b)
	return d.ttl.Milliseconds(), d.owner, err
}

// Conn is the Locker's connection.
func Conn(l *Locker) *zk.Conn { return l.conn }

// Dir is the directory of a lock name.
func Dir(l *Locker, name string) string { return l.dir(name) }

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
	c, err := l.newClaim(name, o)
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
func LeasePath(le lock.Lease) string { return le.(*lease).path }

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
	c, err := l.newClaim(name, o)
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
