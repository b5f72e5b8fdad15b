// Package worker runs function code on one host: it keeps the unpacked code
// packages (by digest), creates sandboxes through a sandbox.Driver, serves
// each sandbox its own Lambda Runtime API (package runtimeapi), enforces
// the init and invocation timeouts and frames the function's logs the way
// Lambda does (START / END / REPORT).
//
// Cold start of one sandbox, as named steps:
//
//	reserve capacity → runtime lookup → code (unpack into the cache once
//	per digest) → layers (unpack each, merge once per combination, see
//	layers.go) → environment → driver.Create → [runtime init runs
//	concurrently; the first Invoke waits for it]
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/runtimeapi"
	"github.com/flintdev/flint/internal/runtimes"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/writegate"
)

// DefaultInitTimeout is Lambda's limit on a runtime's initialisation.
const DefaultInitTimeout = 10 * time.Second

// Errors of the worker (wrapped, with the id they concern).
var (
	ErrNoCapacity     = errors.New("worker: no capacity left on this host")
	ErrUnknownRuntime = errors.New("worker: runtime not offered by this host")
	ErrClosed         = errors.New("worker: closed")
	ErrBusy           = errors.New("worker: sandbox is already running an invocation")
	ErrUnhealthy      = errors.New("worker: sandbox is not healthy")
)

// CodeSource unpacks a function package (internal/codestore.Store).
type CodeSource interface {
	Unpack(ctx context.Context, digest, dir string) error
}

// LogSink stores framed invocation logs (internal/logstore.Store).
// Append is called on the invocation's path, with a context that has no
// deadline: it must queue the entry and return, and bound its own wait
// when it cannot (logstore.Config.StallWait).
type LogSink interface {
	Append(ctx context.Context, account, function, requestID string, data []byte) error
}

// Config configures a Worker.
type Config struct {
	HostID string
	// DataDir holds the code cache (DataDir/code/<digest>). The sandbox
	// user must be able to traverse it (the worker creates what it needs
	// with mode 0755).
	DataDir string
	Driver  sandbox.Driver
	Code    CodeSource
	// Logs may be nil (logs are then only returned in Result.Log).
	Logs     LogSink
	Runtimes *runtimes.Catalog
	// MemoryMB and MaxSandboxes are this host's capacity (0: unlimited).
	MemoryMB, MaxSandboxes int
	// InitTimeout bounds a runtime's init (default DefaultInitTimeout).
	InitTimeout time.Duration
	Clock       func() time.Time
	Logger      *slog.Logger
}

// Validate reports whether c is usable.
func (c Config) Validate() error {
	switch {
	case c.HostID == "":
		return errors.New("worker: HostID is required")
	case c.DataDir == "":
		return errors.New("worker: DataDir is required")
	case c.Driver == nil:
		return errors.New("worker: Driver is required")
	case c.Code == nil:
		return errors.New("worker: Code is required")
	case c.Runtimes == nil:
		return errors.New("worker: Runtimes is required")
	case c.MemoryMB < 0 || c.MaxSandboxes < 0 || c.InitTimeout < 0:
		return errors.New("worker: negative capacity or timeout")
	}
	return nil
}

// Worker owns the sandboxes of one host. It is safe for concurrent use.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	codeDir string
	optDir  string         // merged layer trees (layers.go)
	logsWG  sync.WaitGroup // pending Logs.Append calls

	mu sync.Mutex
	// guarded by mu:
	sandboxes map[string]*Sandbox // nil value: being created (counts against capacity)
	memUsed   int
	closed    bool
	codeLocks map[string]chan struct{} // per digest, capacity 1

	// Lock order: Worker.mu may be taken while holding Sandbox.mu, never
	// the other way round.
}

// Status is what placement needs to know about this host.
type Status struct {
	HostID       string
	MemoryMB     int
	MaxSandboxes int
	// Sandboxes and MemoryUsedMB count the live sandboxes.
	Sandboxes    int
	MemoryUsedMB int
	// CachedCode lists the digests unpacked on this host, sorted.
	CachedCode []string
	// Runtimes lists the runtimes this host offers.
	Runtimes []string
}

// New returns a Worker.
func New(cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.InitTimeout == 0 {
		cfg.InitTimeout = DefaultInitTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	codeDir := filepath.Join(cfg.DataDir, "code")
	if err := os.MkdirAll(codeDir, 0o755); err != nil {
		return nil, fmt.Errorf("worker: code cache: %w", err)
	}
	optDir := filepath.Join(cfg.DataDir, "opt")
	if err := os.MkdirAll(optDir, 0o755); err != nil {
		return nil, fmt.Errorf("worker: layer cache: %w", err)
	}
	// Leftovers of layer merges interrupted by a crash.
	if stale, err := filepath.Glob(filepath.Join(optDir, mergePrefix+"*")); err == nil {
		for _, d := range stale {
			os.RemoveAll(d)
		}
	}
	return &Worker{
		cfg: cfg, log: cfg.Logger.With("host", cfg.HostID), codeDir: codeDir, optDir: optDir,
		sandboxes: map[string]*Sandbox{}, codeLocks: map[string]chan struct{}{},
	}, nil
}

// CreateSandbox builds a sandbox for fn and starts its runtime. It returns
// once the runtime process has started; the runtime's init continues
// concurrently and the first Invoke waits for it. Errors wrap
// ErrNoCapacity, ErrUnknownRuntime, ErrClosed, or the code source's or
// driver's error.
func (w *Worker) CreateSandbox(ctx context.Context, fn *lambdafn.Function) (*Sandbox, error) {
	f := *fn
	f.Environment = make(map[string]string, len(fn.Environment))
	for k, v := range fn.Environment {
		f.Environment[k] = v
	}
	rt, ok := w.cfg.Runtimes.Lookup(f.Runtime)
	if !ok {
		return nil, fmt.Errorf("create sandbox for %s: %q: %w", f.Name, f.Runtime, ErrUnknownRuntime)
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	if err := w.reserve(id, f.MemorySize); err != nil {
		return nil, fmt.Errorf("create sandbox for %s: %w", f.Name, err)
	}
	s, err := w.create(ctx, id, &f, rt)
	if err != nil {
		w.release(id, f.MemorySize)
		return nil, fmt.Errorf("create sandbox %s for %s: %w", id, f.Name, err)
	}
	w.mu.Lock()
	closed := w.closed
	if !closed {
		w.sandboxes[id] = s
	}
	w.mu.Unlock()
	if closed {
		_ = s.Destroy(ctx)
		return nil, fmt.Errorf("create sandbox %s for %s: %w", id, f.Name, ErrClosed)
	}
	return s, nil
}

func (w *Worker) create(ctx context.Context, id string, fn *lambdafn.Function, rt runtimes.Runtime) (*Sandbox, error) {
	t0 := time.Now()
	codeDir, err := w.ensureCode(ctx, fn.CodeDigest)
	if err != nil {
		return nil, err
	}
	optDir, err := w.ensureLayers(ctx, fn.Layers)
	if err != nil {
		return nil, err
	}
	codeFetch := time.Since(t0)
	now := w.cfg.Clock()
	arn := fn.ARN()
	if fn.Version != "" && fn.Version != lambdafn.LatestVersion {
		arn = fn.QualifiedARN()
	}
	s := &Sandbox{
		w: w, fn: fn, id: id, createdAt: now, healthy: true,
		api: runtimeapi.New(runtimeapi.Config{FunctionARN: arn, Logger: w.log, Clock: w.cfg.Clock,
			MaxConcurrency: fn.MaxConcurrency()}),
		slots:    fn.MaxConcurrency(),
		out:      newLogBuffer(),
		initDone: make(chan struct{}),
		gone:     make(chan struct{}),
		log:      w.log.With("function", fn.Name, "sandbox", id),
	}
	cmd, fail := entrypoint(codeDir, optDir, rt.Command())
	if fail != nil {
		// Nothing to start: the cold invocation reports the failure
		// (Runtime.InvalidEntrypoint), as Lambda's does.
		s.sb, s.initFail, s.exited = newUnstarted(id), fail, context.Background()
		close(s.initDone)
		s.log.Info("function has no valid entrypoint", "command", cmd[0])
		return s, nil
	}
	spec := sandbox.Spec{
		ID: id, CodeDir: codeDir, RuntimeDir: rt.RuntimeDir, OptDir: optDir,
		Command:    cmd,
		Env:        lambdaEnv(fn, rt, id, now),
		RuntimeAPI: s.api, Output: s.out,
		// One /next poller per slot, and room for the connections its
		// client churns: aws-lambda-go keeps at most 2 idle, so under load
		// nearly every answer opens a new one while closed ones are still
		// being reaped; a refused connection makes it exit.
		RuntimeAPIConns: 4*fn.MaxConcurrency() + 32,
		MemoryMB:        fn.MemorySize, EphemeralStorageMB: fn.EphemeralMB,
	}
	t1 := time.Now()
	sb, err := w.cfg.Driver.Create(ctx, spec)
	if err != nil {
		s.api.Close()
		return nil, err
	}
	s.sb = sb
	exited, exit := context.WithCancel(context.Background())
	s.exited = exited
	go func() { <-sb.Done(); exit() }() // ends with the runtime
	s.codeFetch, s.sandboxCreate = codeFetch, time.Since(t1)
	go s.watchInit(w.cfg.InitTimeout)
	s.log.Debug("sandbox created", "runtime", fn.Runtime)
	return s, nil
}

// reserve takes capacity for one sandbox of memMB.
func (w *Worker) reserve(id string, memMB int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed:
		return ErrClosed
	case w.cfg.MaxSandboxes > 0 && len(w.sandboxes) >= w.cfg.MaxSandboxes:
		return fmt.Errorf("%d sandboxes: %w", w.cfg.MaxSandboxes, ErrNoCapacity)
	case w.cfg.MemoryMB > 0 && w.memUsed+memMB > w.cfg.MemoryMB:
		return fmt.Errorf("%d of %d MB in use, %d more asked: %w", w.memUsed, w.cfg.MemoryMB, memMB, ErrNoCapacity)
	}
	w.memUsed += memMB
	w.sandboxes[id] = nil // placeholder until created
	return nil
}

func (w *Worker) release(id string, memMB int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.sandboxes[id]; ok {
		delete(w.sandboxes, id)
		w.memUsed -= memMB
	}
}

// Status reports this host's capacity, use and cached code.
func (w *Worker) Status() Status {
	w.mu.Lock()
	st := Status{
		HostID: w.cfg.HostID, MemoryMB: w.cfg.MemoryMB, MaxSandboxes: w.cfg.MaxSandboxes,
		Sandboxes: len(w.sandboxes), MemoryUsedMB: w.memUsed,
	}
	w.mu.Unlock()
	entries, _ := os.ReadDir(w.codeDir)
	for _, e := range entries {
		if e.IsDir() && digestRE.MatchString(e.Name()) {
			st.CachedCode = append(st.CachedCode, e.Name())
		}
	}
	sort.Strings(st.CachedCode)
	st.Runtimes = w.cfg.Runtimes.Names()
	return st
}

// Close destroys every sandbox and waits for pending log appends (bounded
// by ctx). CreateSandbox fails with ErrClosed afterwards.
func (w *Worker) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	var all []*Sandbox
	for _, s := range w.sandboxes {
		if s != nil {
			all = append(all, s)
		}
	}
	w.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Destroy(ctx)
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { w.logsWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("worker: waiting for log appends: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// PrepareCode unpacks the code package digest into this host's cache
// ahead of the first sandbox that needs it (a no-op when it is there).
// Concurrent calls, and CreateSandbox, unpack it once.
func (w *Worker) PrepareCode(ctx context.Context, digest string) error {
	_, err := w.ensureCode(ctx, digest)
	return err
}

var digestRE = regexp.MustCompile(`^[a-zA-Z0-9]{1,128}$`)

// ensureCode returns the cache directory of digest, unpacking it first if
// needed. Concurrent calls for one digest unpack it once.
func (w *Worker) ensureCode(ctx context.Context, digest string) (string, error) {
	if !digestRE.MatchString(digest) {
		return "", fmt.Errorf("code digest %q: invalid", digest)
	}
	dir := filepath.Join(w.codeDir, digest)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	unlock, err := w.lockCode(ctx, digest)
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	// Unpack extracts atomically (into a temp sibling, then a rename) and
	// treats an existing dir as the cache hit it is.
	if err := w.cfg.Code.Unpack(ctx, digest, dir); err != nil {
		// The cause names host paths: it goes to the log, the client
		// is told what happened in its terms.
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return "", lambdaerr.Wrap(lambdaerr.Service, writegate.StorageFull+": the worker has no disk space to unpack the function's code", fmt.Errorf("unpack code %s: %w", digest, err))
		}
		if le := (*lambdaerr.Error)(nil); errors.As(err, &le) {
			return "", fmt.Errorf("unpack code %s: %w", digest, err)
		}
		return "", lambdaerr.Wrap(lambdaerr.Service, "could not unpack the function's code package; the server log has the details", fmt.Errorf("unpack code %s: %w", digest, err))
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("code %s: %w", digest, err)
	}
	return dir, nil
}

// lockCode takes the cache lock of one entry (a digest, or a merged layer
// tree), waiting at most until ctx ends.
func (w *Worker) lockCode(ctx context.Context, key string) (unlock func(), err error) {
	w.mu.Lock()
	lock, ok := w.codeLocks[key]
	if !ok {
		lock = make(chan struct{}, 1)
		w.codeLocks[key] = lock
	}
	w.mu.Unlock()
	select {
	case lock <- struct{}{}:
		return func() { <-lock }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("code %s: %w", key, ctx.Err())
	}
}

// newID returns a sandbox id: 32 hex digits, as in Lambda's log stream names.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("worker: sandbox id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
