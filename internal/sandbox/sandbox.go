// Package sandbox defines the contract between a Flint worker and the
// sandbox drivers that isolate function code (the process driver in
// sandbox/process, a microVM driver later).
//
// Vocabulary: a Driver creates Sandboxes. A Sandbox is one isolated
// execution environment for one function version: one runtime process tree,
// its own filesystem view with the function code read-only at /var/task, a
// private /tmp, its own network namespace and resource limits. A sandbox is
// never reused across functions, versions or configuration changes.
//
// Lifecycle:
//
//	Create ──► running ──(all processes exit)──► exited ──Destroy──► gone
//	              │                                          ▲
//	              └──────────────Destroy─────────────────────┘
//
// Create returns once the runtime process has been started inside the
// sandbox (it is not yet initialised: the worker learns that through the
// Runtime API). Destroy kills every process in the sandbox, including
// double-forked and setsid ones, and frees every host resource (cgroups,
// mounts, namespaces, fds). Destroy is idempotent and safe to call
// concurrently with anything else; all other methods are safe for concurrent
// use too.
package sandbox

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// Driver creates sandboxes on this host.
type Driver interface {
	// Name is the driver's short name ("process", "microvm").
	Name() string
	// Create builds a sandbox from spec and starts spec.Command in it. If
	// any part of the setup fails (cgroups, mounts, seccomp, ...) Create
	// returns an error, leaves nothing behind, and the function's code never
	// starts (fail closed). ctx bounds the creation only, never the
	// sandbox's lifetime.
	Create(ctx context.Context, spec Spec) (Sandbox, error)
}

// Preparer is an optional ability of a Driver, checked at run time: it
// builds sandboxes ahead of need, before the function they will run is
// known, so that a cold start costs only Prepared.Claim (package
// sandbox/pool keeps such sandboxes ready). Prepare is safe for concurrent
// use; ctx bounds the preparation only.
type Preparer interface {
	Prepare(ctx context.Context) (Prepared, error)
}

// Prepared is a sandbox built by Preparer.Prepare and assigned to no
// function yet: its isolation is in place (namespaces, cgroups, root file
// system, the seccomp filter ready to load) and nothing but the driver's
// own code has run in it. Lifecycle:
//
//	Prepare ──► prepared ──Claim──► running Sandbox (see the package doc)
//	               │   └──Claim fails──► gone
//	               ├──dies (Done closed)──► Claim fails
//	               └──Destroy──► gone
//
// A prepared sandbox is claimed at most once and never returned to a pool
// after a function ran in it. Claim and Destroy are safe to call
// concurrently (whichever comes first wins; the other fails or does
// nothing).
type Prepared interface {
	// Claim hands the sandbox its function: spec is what Driver.Create
	// takes, with the same meaning and guarantees. From inside, a claimed
	// sandbox is indistinguishable from one Create made (same limits,
	// mounts, identity, environment, nothing left of the preparation).
	// On error the prepared sandbox is destroyed and nothing of it is
	// left; a second Claim fails.
	Claim(ctx context.Context, spec Spec) (Sandbox, error)
	// Done is closed if the prepared sandbox died before it was claimed
	// (Claim then fails).
	Done() <-chan struct{}
	// MemoryBytes estimates the host memory the prepared sandbox holds,
	// for a pool's budget.
	MemoryBytes() uint64
	// Destroy frees an unclaimed prepared sandbox; it does nothing once
	// Claim was called (the claimed Sandbox owns everything). Idempotent.
	Destroy(ctx context.Context) error
}

// Spec describes one sandbox to create.
type Spec struct {
	// ID is unique on this host; drivers use it to name cgroups and the like.
	// It matches [a-zA-Z0-9-]{1,64}.
	ID string
	// CodeDir is a host directory holding the unpacked function package.
	// It is mounted read-only at /var/task inside the sandbox.
	CodeDir string
	// RuntimeDir, when not empty, is a host directory mounted read-only at
	// /var/runtime (Flint's own runtime clients for Python and Node).
	RuntimeDir string
	// OptDir, when not empty, is a host directory mounted read-only at
	// /opt, exactly as CodeDir is at /var/task: the function's layers,
	// merged by the worker. Without it the sandbox has no /opt.
	OptDir string
	// Command is the argv of the runtime process, as seen inside the
	// sandbox, e.g. ["/var/task/bootstrap"] or
	// ["/usr/bin/python3", "/var/runtime/bootstrap.py"].
	Command []string
	// Env is the complete environment of the runtime process ("K=V"). The
	// host's environment never leaks in. The driver adds
	// AWS_LAMBDA_RUNTIME_API itself (see RuntimeAPI).
	Env []string
	// RuntimeAPI is served by the driver so that the sandbox can reach it at
	// the address the driver puts in AWS_LAMBDA_RUNTIME_API (host:port,
	// as Lambda's runtimes expect). Nothing else of the host is reachable.
	RuntimeAPI http.Handler
	// RuntimeAPIConns is how many Runtime API connections the runtime
	// may hold at once beyond the driver's own bound: a runtime serving N
	// invocations at once (AWS_LAMBDA_MAX_CONCURRENCY) polls /next on N
	// connections. 0: the driver's bound alone.
	RuntimeAPIConns int
	// Output receives the runtime's stdout and stderr, merged, as written.
	// Writes to it come from one goroutine at a time.
	Output io.Writer
	// MemoryMB is the memory limit (the function's MemorySize).
	MemoryMB int
	// EphemeralStorageMB is the size of the private /tmp.
	EphemeralStorageMB int
}

// Sandbox is one running (or exited) sandbox. See the package doc for its
// lifecycle.
type Sandbox interface {
	ID() string
	// Done is closed once every process in the sandbox has exited.
	Done() <-chan struct{}
	// Err describes why the sandbox exited (nil while running). An exit
	// caused by the memory limit wraps ErrOutOfMemory.
	Err() error
	// SyncOutput blocks until every byte that the sandbox wrote to its
	// stdout/stderr before the call has been written to Spec.Output, so that
	// a function's log lines precede the END line of the invocation that
	// produced them.
	SyncOutput(ctx context.Context) error
	// Stats reports resource usage so far.
	Stats() (Stats, error)
	// Destroy kills every process in the sandbox and frees all it holds.
	Destroy(ctx context.Context) error
}

// Stats is a sandbox's resource usage.
type Stats struct {
	// MaxMemoryBytes is the peak memory use of the sandbox (from its cgroup).
	MaxMemoryBytes uint64
	// OOMKills counts processes killed for exceeding the memory limit.
	OOMKills uint64
}

// Step is the duration of one named step of a sandbox's creation.
type Step struct {
	Name     string
	Duration time.Duration
}

// StepTimer is an optional ability of a Sandbox, checked at run time:
// Timings reports how long each named step of its creation took, in order
// (for metrics and benchmarks). The names are a small fixed set per
// driver.
type StepTimer interface {
	Timings() []Step
}

// PeakMemoryReader is an optional ability of a Sandbox, checked at run
// time: MaxMemoryBytes reports Stats().MaxMemoryBytes alone, for a caller
// that needs nothing else (a warm invocation's REPORT line) and a driver
// for which the full Stats cost more (the process driver reads the OOM
// count from a second cgroup file).
type PeakMemoryReader interface {
	MaxMemoryBytes() (uint64, error)
}

// ErrOutOfMemory is wrapped by Sandbox.Err when the memory limit killed the
// runtime.
var ErrOutOfMemory = errors.New("sandbox: out of memory")
