package metrics

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/quorumlock/quorumlock/lock"
)

func TestOutcomeOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Outcome
	}{
		{nil, OutcomeOK},
		{fmt.Errorf("x: %w", lock.ErrHeld), OutcomeHeld},
		{fmt.Errorf("x: %w", lock.ErrNotHeld), OutcomeNotHeld},
		{context.Canceled, OutcomeCanceled},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), OutcomeCanceled},
		{fmt.Errorf("%w: %w", lock.ErrNoQuorum, context.DeadlineExceeded), OutcomeNoQuorum},
		{lock.ErrClosed, OutcomeClosed},
		{lock.ErrInvalidName, OutcomeInvalid},
		{lock.ErrInvalidOption, OutcomeInvalid},
		{lock.ErrLimit, OutcomeLimit},
		{errors.New("disk on fire"), OutcomeError},
	} {
		assert.Equal(t, c.want, OutcomeOf(c.err), "%v", c.err)
	}
}

func TestReasonOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Reason
	}{
		{lock.ErrReleased, ReasonReleased},
		{fmt.Errorf("x: %w", lock.ErrExpired), ReasonExpired},
		{lock.ErrRevoked, ReasonRevoked},
		{fmt.Errorf("x: %w", lock.ErrAdopted), ReasonAdopted},
		{lock.ErrLost, ReasonLost},
		{errors.New("other"), ReasonLost},
	} {
		assert.Equal(t, c.want, ReasonOf(c.err), "%v", c.err)
	}
}

func TestOrNop(t *testing.T) {
	assert.Equal(t, Sink(Nop{}), OrNop(nil))
	var s Sink = Nop{}
	assert.Equal(t, s, OrNop(s))
}
