package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/quorumlock/quorumlock/adapters/migrate"
	"github.com/quorumlock/quorumlock/lock"
)

// With -migrate from:to the sale runs while the buyers move from one
// backend to the other by the runbook of adapters/migrate: every buyer is
// a replica holding a Locker on each backend and a Dual Locker over both,
// and the sale goes through five stages — all on the old code (from
// alone), half of them deployed to Dual, all Dual, half of them deployed
// to the new code (to alone), all on the new code. In each stage every
// buyer tries to buy one ticket, the kinds of a rolling stage racing each
// other. The counter's fence refuses a token below the last one it took,
// so a token that went backwards across the move fails the run.

// phaseKind is the Locker a buyer uses in a stage.
type phaseKind int

const (
	kindOld phaseKind = iota
	kindDual
	kindNew
)

func (k phaseKind) String() string { return [...]string{"old", "dual", "new"}[k] }

// stages says which Locker buyer i uses in each stage of the move.
var stages = []struct {
	name string
	kind func(i int) phaseKind
}{
	{"old code", func(int) phaseKind { return kindOld }},
	{"deploying Dual", func(i int) phaseKind { return pick(i%2 == 0, kindDual, kindOld) }},
	{"Dual", func(int) phaseKind { return kindDual }},
	{"deploying the new code", func(i int) phaseKind { return pick(i%2 == 0, kindNew, kindDual) }},
	{"new code", func(int) phaseKind { return kindNew }},
}

func pick(c bool, a, b phaseKind) phaseKind {
	if c {
		return a
	}
	return b
}

func runMigration(ctx context.Context, cfg config, out io.Writer) error {
	fromName, toName, _ := strings.Cut(cfg.migrate, ":")
	newFrom, stopFrom, err := openBackend(ctx, cfg, fromName)
	defer stopFrom()
	if err != nil {
		return fmt.Errorf("%s: %w", fromName, err)
	}
	newTo, stopTo, err := openBackend(ctx, cfg, toName)
	defer stopTo()
	if err != nil {
		return fmt.Errorf("%s: %w", toName, err)
	}
	var buyers []replica
	defer func() {
		for _, b := range buyers {
			b.close()
		}
	}()
	for range cfg.buyers {
		b, err := newReplica(newFrom, newTo)
		if err != nil {
			return err
		}
		buyers = append(buyers, b)
	}
	st := &store{left: cfg.tickets}
	var report strings.Builder
	fmt.Fprintf(&report, "moving %d buyers from %s to %s\n", cfg.buyers, fromName, toName)
	for _, stage := range stages {
		lines, err := saleStage(ctx, st, buyers, stage.kind)
		if err != nil {
			return fmt.Errorf("stage %q: %w", stage.name, err)
		}
		fmt.Fprintf(&report, "-- %s\n%s", stage.name, lines)
	}
	fmt.Fprintf(&report, "SUMMARY tickets=%d sold=%d buyers=%d oversold=%d\n", cfg.tickets, st.sold, cfg.buyers, st.oversold(cfg.tickets))
	_, err = io.WriteString(out, report.String())
	return err
}

// saleStage lets every buyer try to buy one ticket through the Locker
// kind(i) names, all at once, and returns their lines in token order.
func saleStage(ctx context.Context, st *store, buyers []replica, kind func(i int) phaseKind) (string, error) {
	lines := make([]string, len(buyers))
	errs := make([]error, len(buyers))
	var wg sync.WaitGroup
	for i, b := range buyers {
		k := kind(i)
		l := b.lockers[k]
		wg.Go(func() {
			line, err := buy(ctx, st, l, i)
			lines[i] = fmt.Sprintf("%s (%v)", line, k)
			if err != nil {
				errs[i] = fmt.Errorf("buyer %02d (%v): %w", i+1, k, err)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return "", err
		}
	}
	return inTokenOrder(lines), nil
}

// replica is one buyer's Lockers: one on each backend and a Dual Locker
// over those two (it does not own them).
type replica struct{ lockers [3]lock.Locker }

func newReplica(newFrom, newTo func() (lock.Locker, error)) (replica, error) {
	var r replica
	var err error
	if r.lockers[kindOld], err = newFrom(); err != nil {
		return r, err
	}
	if r.lockers[kindNew], err = newTo(); err != nil {
		_ = r.lockers[kindOld].Close()
		return r, err
	}
	dual, err := migrate.New(r.lockers[kindOld], r.lockers[kindNew], migrate.Config{Phase: migrate.Dual})
	if err != nil {
		_ = r.lockers[kindOld].Close()
		_ = r.lockers[kindNew].Close()
		return r, err
	}
	r.lockers[kindDual] = dual
	return r, nil
}

// close closes the Dual Locker first: it releases through the other two.
func (r replica) close() {
	for _, k := range []phaseKind{kindDual, kindOld, kindNew} {
		_ = r.lockers[k].Close()
	}
}
