// Package concurrency holds Flint's concurrency controls, the way Lambda
// has them: an account-wide limit on concurrent executions, reserved
// concurrency per function (carved out of the account's pool), and a
// bounded rate at which a function may scale out (new sandboxes per
// second). All checks are non-blocking: a caller over a limit is refused at
// once with Lambda's TooManyRequestsException and Reason; nothing queues.
//
// It also defines ProvisionedStatus, the state of a provisioned
// concurrency configuration as the Worker Manager reports it.
package concurrency

import (
	"errors"
	"fmt"
	"sync"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// Lambda's throttling reasons (TooManyRequestsException.Reason).
const (
	// ReasonAccount: the account's unreserved pool is exhausted.
	ReasonAccount = "ConcurrentInvocationLimitExceeded"
	// ReasonReserved: the function's reserved concurrency is exhausted
	// (or is 0: the function is disabled).
	ReasonReserved = "ReservedFunctionConcurrentInvocationLimitExceeded"
	// ReasonScaleRate: the function may not add sandboxes this fast.
	ReasonScaleRate = "FunctionInvocationRateLimitExceeded"
)

// Defaults.
const (
	// DefaultAccountLimit is Lambda's default ConcurrentExecutions.
	DefaultAccountLimit = 1000
	// DefaultMinUnreserved is the part of the account limit Lambda keeps
	// unreserved for functions without reserved concurrency.
	DefaultMinUnreserved = 100
	// RetryAfterSeconds is the Retry-After sent with a throttle.
	RetryAfterSeconds = 1
)

// Throttled returns Lambda's TooManyRequestsException for reason.
func Throttled(reason string) *lambdaerr.Error {
	return &lambdaerr.Error{Type: lambdaerr.TooManyRequests, Message: "Rate Exceeded.",
		Reason: reason, RetryAfterSeconds: RetryAfterSeconds}
}

type fnKey struct{ account, name string }

// Limiter counts in-flight executions per function and per account and
// refuses those over the limits. Create it with NewLimiter; it is safe for
// concurrent use.
//
// A function with reserved concurrency R runs at most R executions at once
// and never draws on the account's pool; the other functions of the account
// share the unreserved pool: the account limit minus the sum of all
// reservations.
type Limiter struct {
	limit int
	// nodes is how many nodes share the account's unreserved pool (1:
	// this Limiter is the only one); guarded by mu.
	nodes int

	mu          sync.Mutex
	reserved    map[fnKey]int  // reserved concurrency by function (guarded by mu)
	reservedSum map[string]int // sum of reserved by account (guarded by mu)
	inFlight    map[fnKey]int  // executions of reserved functions (guarded by mu)
	unreserved  map[string]int // executions drawing on the account pool (guarded by mu)
}

// NewLimiter returns a Limiter with the given per-account limit (> 0).
func NewLimiter(accountLimit int) (*Limiter, error) {
	if accountLimit <= 0 {
		return nil, errors.New("concurrency: account limit must be positive")
	}
	return &Limiter{
		limit:       accountLimit,
		nodes:       1,
		reserved:    map[fnKey]int{},
		reservedSum: map[string]int{},
		inFlight:    map[fnKey]int{},
		unreserved:  map[string]int{},
	}, nil
}

// AccountLimit is the per-account limit the Limiter was built with.
func (l *Limiter) AccountLimit() int { return l.limit }

// SetReserved sets (n >= 0) the reserved concurrency of a function. It
// enforces, it does not validate: checking the account's minimum
// unreserved pool is the API's job. Executions in flight keep counting
// against the pool they were admitted from.
func (l *Limiter) SetReserved(account, name string, n int) {
	if n < 0 {
		n = 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k := fnKey{account, name}
	if old, ok := l.reserved[k]; ok {
		l.reservedSum[account] -= old
	}
	l.reserved[k] = n
	l.reservedSum[account] += n
}

// ClearReserved removes a function's reserved concurrency.
func (l *Limiter) ClearReserved(account, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := fnKey{account, name}
	if old, ok := l.reserved[k]; ok {
		l.reservedSum[account] -= old
		delete(l.reserved, k)
		if l.reservedSum[account] == 0 {
			delete(l.reservedSum, account)
		}
	}
}

// SetNodes says how many nodes of a cluster admit invocations, each with
// its own Limiter: the account's unreserved pool is then split evenly, each
// admitting at most ⌊pool/n⌋ (but at least 1), so that together they never
// exceed the account's limit. Reserved concurrency is not split (a
// cluster counts it with leases). n < 1 counts as 1.
func (l *Limiter) SetNodes(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodes = max(n, 1)
}

// Reserved returns a function's reserved concurrency, if set.
func (l *Limiter) Reserved(account, name string) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.reserved[fnKey{account, name}]
	return n, ok
}

// Unreserved is the account's unreserved pool: the limit minus all
// reservations (never below 0).
func (l *Limiter) Unreserved(account string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(0, l.limit-l.reservedSum[account])
}

// Acquire admits one execution of a function or refuses it at once with a
// TooManyRequestsException (*lambdaerr.Error, Reason ReasonReserved or
// ReasonAccount). On success release must be called exactly once when the
// execution ends (later calls do nothing).
func (l *Limiter) Acquire(account, name string) (release func(), err error) {
	k := fnKey{account, name}
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.reserved[k]; ok {
		if l.inFlight[k] >= r {
			return nil, fmt.Errorf("function %s/%s at its reserved concurrency %d: %w", account, name, r, Throttled(ReasonReserved))
		}
		l.inFlight[k]++
		return l.releaser(func() {
			if l.inFlight[k]--; l.inFlight[k] <= 0 {
				delete(l.inFlight, k)
			}
		}), nil
	}
	pool := max(0, l.limit-l.reservedSum[account])
	if l.nodes > 1 && pool > 0 {
		pool = max(1, pool/l.nodes)
	}
	if l.unreserved[account] >= pool {
		return nil, fmt.Errorf("account %s at its unreserved concurrency %d: %w", account, pool, Throttled(ReasonAccount))
	}
	l.unreserved[account]++
	return l.releaser(func() {
		if l.unreserved[account]--; l.unreserved[account] <= 0 {
			delete(l.unreserved, account)
		}
	}), nil
}

// releaser wraps a decrement (run under l.mu) into a once-only release.
func (l *Limiter) releaser(dec func()) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			dec()
		})
	}
}

// InFlight returns the executions in flight for a function with reserved
// concurrency (0 for others) and for the account's unreserved pool.
func (l *Limiter) InFlight(account, name string) (function, unreservedPool int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inFlight[fnKey{account, name}], l.unreserved[account]
}
