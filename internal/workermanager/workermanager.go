// Package workermanager is Flint's Worker Manager: it knows every sandbox of
// every function version, idle or busy, hands each invocation to a warm
// idle sandbox of the same function version and configuration (the same
// lambdafn.Function.SandboxKey), or, when there is none, asks the Placement
// Service for a host and has that host create a new sandbox (a cold start).
// A sandbox runs one invocation at a time, or up to the function's
// PerExecutionEnvironmentMaxConcurrency (Lambda Managed Instances): such a
// sandbox takes invocations until its slots are full, and only then does
// an invocation claim an idle one or create a new one.
//
// Idle sandboxes are kept warm for Config.KeepAlive and then destroyed by a
// reaper goroutine; Retire destroys every sandbox of a deleted function
// (RetireVersion, of one version); Close destroys everything. Each sandbox
// holds a placement reservation from the moment it is placed until it is
// destroyed.
//
// Invocations are admitted by the account and reserved concurrency limits
// (limits.go) and cold starts by a per-function scale-out rate, without
// waiting: over a limit Invoke fails at once with a
// TooManyRequestsException. Provisioned concurrency (provisioned.go) keeps
// initialised sandboxes of a version ready ahead of invocations.
//
// The sandbox state machine and the locking rules are described in
// manager.go; docs/workermanager.md has the design.
package workermanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/flintdev/flint/internal/clock"
	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/placement"
)

// Host is a worker host as the manager sees it.
type Host interface {
	// CreateSandbox creates a sandbox for fn (code downloaded, runtime
	// started, not yet initialised). ctx bounds the creation only, never the
	// sandbox's lifetime.
	CreateSandbox(ctx context.Context, fn *lambdafn.Function) (Sandbox, error)
}

// Sandbox is one sandbox on a host, created for exactly one fn.SandboxKey().
// The manager runs at most fn.MaxConcurrency() Invoke calls on a sandbox at
// once (one, unless the function sets PerExecutionEnvironmentMaxConcurrency);
// the other methods may be called concurrently with Invoke.
type Sandbox interface {
	ID() string
	// Invoke runs one invocation; the first Invoke on a new sandbox includes
	// the runtime's init. Function errors (including timeouts and crashes)
	// come back in Result.FunctionError, not as err. An err wrapping
	// invocation.ErrNotDelivered means the function never saw the event;
	// the manager then runs it on another sandbox.
	Invoke(ctx context.Context, req invocation.Request) (invocation.Result, error)
	// Healthy reports whether the sandbox can take another invocation (false
	// after a timeout, crash, OOM).
	Healthy() bool
	Destroy(ctx context.Context) error
}

// Initializer is an optional ability of a Sandbox, checked at run time
// (like http.Flusher): Init runs the runtime's init phase (bootstrap
// started, handler loaded, up to its first "next" request) ahead of the
// first invocation, so that invocation reports no Init Duration. The
// manager calls it once, on sandboxes it creates for provisioned
// concurrency, before any Invoke. A sandbox without it is initialised by
// its first Invoke, as usual.
type Initializer interface {
	Init(ctx context.Context) error
}

// Streamer is an optional ability of a Sandbox, checked at run time (like
// http.Flusher): InvokeStream runs one invocation whose successful response
// body goes to stream as the function produces it (Result.Payload stays
// empty); errors come back in the Result as for Invoke. A sandbox without
// it (a remote host that cannot stream yet) is invoked with Invoke and its
// whole response written to the stream at the end.
type Streamer interface {
	InvokeStream(ctx context.Context, req invocation.Request, stream invocation.Stream) (invocation.Result, error)
}

// Placer is the part of the Placement Service the manager uses;
// *placement.Service implements it.
type Placer interface {
	Place(ctx context.Context, req placement.Request) (placement.Reservation, error)
	// Release must be idempotent and ignore unknown reservations.
	Release(r placement.Reservation)
}

var _ Placer = (*placement.Service)(nil)

// ErrClosed is returned by Invoke once Close has been called.
var ErrClosed = errors.New("workermanager: closed")

// Errors a Host or Sandbox wraps so the manager can try another host.
var (
	// ErrHostUnreachable: the call never reached the host (it is down or
	// gone), so nothing ran there; the manager drops the host from
	// placement and places the invocation elsewhere.
	ErrHostUnreachable = errors.New("worker host unreachable")
	// ErrHostFull: the host refused a new sandbox for lack of capacity
	// (another frontend took it first); the manager places again, on
	// another host.
	ErrHostFull = errors.New("worker host has no capacity left")
)

// maxHostAttempts bounds the hosts one cold start or invocation tries when
// hosts are unreachable or full.
const maxHostAttempts = 3

// Defaults for the zero values of Config.
const (
	DefaultKeepAlive      = 5 * time.Minute
	DefaultCreateTimeout  = 3 * time.Minute
	DefaultInvokeGrace    = time.Minute
	DefaultDestroyTimeout = 30 * time.Second
	// DefaultScaleOutRate and DefaultScaleOutBurst: Lambda's scaling rate
	// of 1000 new execution environments per function every 10 seconds.
	DefaultScaleOutRate  = 100.0
	DefaultScaleOutBurst = 1000
	// maxReapInterval caps the default reap interval (KeepAlive/4).
	maxReapInterval = 30 * time.Second
	// maxFunctionTimeout is Lambda's largest function timeout, used for
	// the invoke backstop when a function has none set.
	maxFunctionTimeout = 900 * time.Second
)

// Config configures a Manager.
type Config struct {
	// Placement picks hosts and reserves their capacity (required).
	Placement Placer
	// Hosts looks a placed host up by its ID (required).
	Hosts func(hostID string) (Host, bool)
	// KeepAlive is how long a sandbox may stay idle before it is destroyed
	// (default DefaultKeepAlive).
	KeepAlive time.Duration
	// ReapInterval is how often the reaper looks for expired idle sandboxes
	// (default KeepAlive/4, at most 30s).
	ReapInterval time.Duration
	// CreateTimeout bounds one CreateSandbox call (default
	// DefaultCreateTimeout).
	CreateTimeout time.Duration
	// InvokeGrace is added to the function's timeout to get the backstop
	// deadline of one Sandbox.Invoke call; the worker enforces the function
	// timeout itself, the backstop only guards against a worker that never
	// answers (default DefaultInvokeGrace).
	InvokeGrace time.Duration
	// DestroyTimeout bounds a Destroy the manager starts on its own
	// (unhealthy sandbox, keep-alive expiry, retired busy sandbox) (default
	// DefaultDestroyTimeout).
	DestroyTimeout time.Duration
	// AccountConcurrency is the account-wide limit on concurrent
	// executions (default concurrency.DefaultAccountLimit, Lambda's 1000);
	// see SetReservedConcurrency for the per-function limits.
	AccountConcurrency int
	// ScaleOutRate and ScaleOutBurst bound how fast one function adds
	// sandboxes: a token bucket per function of ScaleOutBurst new
	// sandboxes refilled at ScaleOutRate per second (defaults 100 and
	// 1000: Lambda's 1000 execution environments per 10 seconds). A cold
	// start over it is refused with TooManyRequestsException, Reason
	// FunctionInvocationRateLimitExceeded.
	ScaleOutRate  float64
	ScaleOutBurst int
	// Leases, when set, makes reserved concurrency hold across a cluster:
	// an invocation of a function with reserved concurrency also takes a
	// lease from it (nil: the limit is this manager's alone).
	Leases Leaser
	// ProvisionParallelism bounds the sandboxes one provisioned
	// concurrency configuration creates at once (default 4).
	ProvisionParallelism int
	// Clock tells the time and times the reaper (default clock.Real).
	// Idle ages and the scale-out rate are measured with it.
	Clock clock.Clock
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Validate reports whether c is usable; zero durations get defaults in New.
func (c Config) Validate() error {
	switch {
	case c.Placement == nil:
		return errors.New("workermanager: Config.Placement is required")
	case c.Hosts == nil:
		return errors.New("workermanager: Config.Hosts is required")
	case c.KeepAlive < 0, c.ReapInterval < 0, c.CreateTimeout < 0, c.InvokeGrace < 0, c.DestroyTimeout < 0:
		return fmt.Errorf("workermanager: negative duration in config")
	case c.AccountConcurrency < 0, c.ScaleOutRate < 0, c.ScaleOutBurst < 0, c.ProvisionParallelism < 0:
		return fmt.Errorf("workermanager: negative limit in config")
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.ReapInterval == 0 {
		c.ReapInterval = min(c.KeepAlive/4, maxReapInterval)
		if c.ReapInterval <= 0 {
			c.ReapInterval = time.Millisecond
		}
	}
	if c.CreateTimeout == 0 {
		c.CreateTimeout = DefaultCreateTimeout
	}
	if c.InvokeGrace == 0 {
		c.InvokeGrace = DefaultInvokeGrace
	}
	if c.DestroyTimeout == 0 {
		c.DestroyTimeout = DefaultDestroyTimeout
	}
	if c.AccountConcurrency == 0 {
		c.AccountConcurrency = concurrency.DefaultAccountLimit
	}
	if c.ScaleOutRate == 0 {
		c.ScaleOutRate = DefaultScaleOutRate
	}
	if c.ScaleOutBurst == 0 {
		c.ScaleOutBurst = DefaultScaleOutBurst
	}
	if c.ProvisionParallelism == 0 {
		c.ProvisionParallelism = 4
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// PoolStats counts the sandboxes of one SandboxKey.
type PoolStats struct {
	Idle     int
	Busy     int
	Creating int
	// Provisioned counts the sandboxes (of any state) held for provisioned
	// concurrency; they are also counted as Idle, Busy or Creating.
	Provisioned int
}

// Stats is a snapshot of the manager's sandboxes and counters.
type Stats struct {
	// Pools is keyed by SandboxKey; keys without sandboxes are absent.
	Pools map[string]PoolStats
	// Totals over all pools.
	Idle, Busy, Creating int
	// Counters since New: invocations handed to a sandbox, of which cold
	// starts; sandboxes destroyed.
	Invocations uint64
	ColdStarts  uint64
	Destroyed   uint64
}

// Stats returns a snapshot. Safe for concurrent use.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Stats{
		Pools:       make(map[string]PoolStats, len(m.pools)),
		Invocations: m.invocations,
		ColdStarts:  m.coldStarts,
		Destroyed:   m.destroyed,
	}
	for key, p := range m.pools {
		ps := PoolStats{Idle: len(p.idle)}
		for _, e := range p.idle {
			if e.provisioned {
				ps.Provisioned++
			}
		}
		for e := range p.busy {
			if e.provisioned {
				ps.Provisioned++
			}
			if e.state == stateCreating {
				ps.Creating++
			} else {
				ps.Busy++
			}
		}
		s.Pools[key] = ps
		s.Idle += ps.Idle
		s.Busy += ps.Busy
		s.Creating += ps.Creating
	}
	return s
}
