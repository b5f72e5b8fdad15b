package workermanager

import (
	"context"
	"time"

	"github.com/flintdev/flint/internal/lambdafn"
)

// Concurrency limits (package concurrency does the counting): every
// invocation is admitted by the Limiter in Invoke, before a goroutine or a
// sandbox is spent on it, and holds its slot until it ends. Reserved
// concurrency is kept in the metadata store and reaches every node's
// manager through a KV watch (the server wires it); in a cluster, an
// invocation of a function with reserved concurrency also takes a
// cluster-wide lease (Config.Leases), so the limit holds across every
// node that admits invocations.

// Leaser counts executions across a cluster (package leases).
type Leaser interface {
	// Acquire takes one of limit leases of key for at most ttl, or fails
	// at once with a TooManyRequestsException. release is called once.
	Acquire(ctx context.Context, key string, limit int, ttl time.Duration) (release func(), err error)
}

// leaseReserved takes the cluster-wide lease of a function with reserved
// concurrency, when the manager has a Leaser; the returned release frees
// both it and the local slot. On error the local slot is freed.
func (m *Manager) leaseReserved(ctx context.Context, fn *lambdafn.Function, local func()) (func(), error) {
	if m.cfg.Leases == nil {
		return local, nil
	}
	n, ok := m.limiter.Reserved(fn.Account, fn.Name)
	if !ok {
		return local, nil
	}
	lease, err := m.cfg.Leases.Acquire(ctx, fn.Account+"."+fn.Name, n, m.backstop(fn))
	if err != nil {
		local()
		return nil, err
	}
	return func() { lease(); local() }, nil
}

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

// SetClusterNodes says how many nodes of a cluster admit invocations (run
// a Worker Manager for a frontend or pollers): each then admits its even
// share of the account's unreserved concurrency, so the account's limit
// holds across the cluster without a round trip per invocation. The
// server updates it as nodes come and go.
func (m *Manager) SetClusterNodes(n int) { m.limiter.SetNodes(n) }
