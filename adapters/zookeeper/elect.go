package zookeeper

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
)

// Elections (DESIGN.md, "Elections"): a Campaign is a claim of type
// election (its child's id starts with electionTag) whose record's owner
// is the term's value; the lowest child leads. A term is the claim's lease, with Proclaim.

// Campaign implements lock.Elector: it blocks until this call's claim is
// the lowest child of election's directory (FIFO), ctx ends or an error
// occurs. A name that lives as a mutex fails with ErrInvalidOption.
func (l *Locker) Campaign(ctx context.Context, election, value string, opts ...lock.Option) (lock.Term, error) {
	o, err := lock.ValidateRequest(election, opts...)
	if err != nil {
		return nil, err
	}
	if err := lock.ValidateValue(value); err != nil {
		return nil, err
	}
	o.Owner = value
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("zookeeper: campaign %q: %w", election, err)
	}
	defer end()
	c, err := l.newClaim(election, typeElection, false, o)
	if err != nil {
		return nil, err
	}
	le, err := l.grantClaim(ctx, opCtx, c, true, "campaign")
	if err != nil {
		return nil, err
	}
	return term{le}, nil
}

// term is a won election: its claim's lease. Release resigns: the lease
// ends (Done closes) before its node is deleted, and only that delete
// lets the next candidate lead.
type term struct{ *lease }

var _ lock.Term = term{}

// Proclaim implements lock.Term: a version-checked SetData of the term's
// node with the new value (for a TTL term, also its Refresh).
func (t term) Proclaim(ctx context.Context, value string) error {
	if err := lock.ValidateValue(value); err != nil {
		return err
	}
	return t.update(ctx, "proclaim", func(d *nodeData) { d.owner = value })
}

// Leader implements lock.Elector: a barrier, a listing and a read of the
// lowest child, as Inspect. An empty seat is ErrNoLeader; a name that
// lives as another type, ErrInvalidOption.
func (l *Locker) Leader(ctx context.Context, election string) (lock.LeaderInfo, error) {
	if err := lock.ValidateName(election); err != nil {
		return lock.LeaderInfo{}, err
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return lock.LeaderInfo{}, fmt.Errorf("zookeeper: leader %q: %w", election, err)
	}
	defer end()
	var info lock.LeaderInfo
	err = retry(opCtx, func() error {
		now, err := l.barrier(opCtx)
		if err != nil {
			return err
		}
		kids, d, stat, err := l.head(opCtx, l.dir(election))
		switch {
		case len(kids) > 0 && kids[0].typ != typeElection: // by its name
			return fmt.Errorf("%w: %q lives as %s, asked as %s", lock.ErrInvalidOption, election, kids[0].typ, typeElection)
		case errors.Is(err, errNoDir), err == nil && len(kids) == 0:
			return lock.ErrNoLeader
		case err != nil:
			return err
		}
		info = leaderInfo(election, d, stat, now)
		return nil
	})
	if err != nil {
		return lock.LeaderInfo{}, l.fail(ctx, opCtx, fmt.Sprintf("leader %q", election), err)
	}
	return info, nil
}

// leaderInfo is the state of election whose head, an election's claim,
// has d and stat; now is the server's time (Unix ms) Since is measured to.
func leaderInfo(election string, d nodeData, stat *zk.Stat, now int64) lock.LeaderInfo {
	return lock.LeaderInfo{
		Election: election,
		Token:    uint64(stat.Czxid),
		Value:    d.owner,
		Holder:   holderID(d, stat),
		Since:    since(now, grantTime(d, stat)),
	}
}
