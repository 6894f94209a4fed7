package redis

// StopRenewals makes l behave like a holder process that stopped renewing:
// every later renewal, Release and Refresh fails (its background contexts
// are cancelled), while
// l keeps its leases' local deadlines.
func StopRenewals(l *Locker) {
	if l.one != nil {
		l.one.bgCancel()
		return
	}
	for _, c := range l.many.subs {
		c.bgCancel()
	}
}

// Rounds returns how many rounds of votes a Redlock Locker has asked for
// (0 for a single primary).
func Rounds(l *Locker) int64 {
	if l.many == nil {
		return 0
	}
	return l.many.rounds.Load()
}
