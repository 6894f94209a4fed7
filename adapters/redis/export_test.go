package redis

// StopRenewals makes l behave like a holder process that stopped renewing:
// every later renewal fails (its background contexts are cancelled), while
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
