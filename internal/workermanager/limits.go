package workermanager

// Concurrency limits (package concurrency does the counting): every
// invocation is admitted by the Limiter in Invoke, before a goroutine or a
// sandbox is spent on it, and holds its slot until it ends. The frontend
// persists reserved concurrency in the metadata store and pushes it here;
// after a restart it pushes every stored value again (frontend
// Handler.Restore).

// SetReservedConcurrency sets a function's reserved concurrency (all its
// versions together): at most n of its invocations run at once, and they do
// not draw on the account's unreserved pool; n == 0 throttles every
// invocation (the function is disabled). Validation (the account's minimum
// unreserved pool) is the caller's job. Safe for concurrent use.
func (m *Manager) SetReservedConcurrency(account, name string, n int) {
	m.limiter.SetReserved(account, name, n)
	m.log.Info("reserved concurrency set", "account", account, "function", name, "reserved", n)
}

// ClearReservedConcurrency removes a function's reserved concurrency: it
// shares the account's unreserved pool again.
func (m *Manager) ClearReservedConcurrency(account, name string) {
	m.limiter.ClearReserved(account, name)
}

// AccountConcurrency is the account-wide limit (Config.AccountConcurrency).
func (m *Manager) AccountConcurrency() int { return m.limiter.AccountLimit() }

// UnreservedConcurrency is the account's unreserved pool: the limit minus
// every reservation the manager knows.
func (m *Manager) UnreservedConcurrency(account string) int { return m.limiter.Unreserved(account) }
