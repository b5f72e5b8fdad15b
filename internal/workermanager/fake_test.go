package workermanager

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/clock/clocktest"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/placement"
)

// This file holds the test world: fake hosts and sandboxes implementing the
// interfaces of this package (recording concurrency and misuse), the real
// placement.Service behind a wrapper that catches double releases, and a
// fake clock (the reaper's timer fires only when a test advances it).

// world is one test's manager with everything around it.
type world struct {
	t     testing.TB
	m     *Manager
	svc   *placement.Service
	place *countingPlacer
	clock *clocktest.Fake
	hosts map[string]*fakeHost

	// invoke, when set, runs inside every fake Invoke (after the
	// concurrency bookkeeping).
	invoke func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error)

	// initErr, when set before the first sandbox is created, gives every
	// sandbox the Initializer ability; it decides Init's result.
	initErr func(sb *fakeSandbox) error

	sandboxSeq atomic.Int64
	inFlight   atomic.Int64 // invocations inside sandboxes right now
	maxFlight  atomic.Int64

	mu         sync.Mutex
	violations []string
}

type worldConfig struct {
	hostMemoryMB []int // one host per entry
	maxSandboxes int
	keepAlive    time.Duration
	reapInterval time.Duration
	// Concurrency limits (0: the manager's defaults).
	accountConcurrency int
	scaleOutRate       float64
	scaleOutBurst      int
	// leases is Config.Leases (nil: none).
	leases Leaser
}

func newWorld(t testing.TB, wc worldConfig) *world {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := placement.New(placement.Config{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{
		t:     t,
		svc:   svc,
		place: &countingPlacer{svc: svc, live: map[string]bool{}, released: map[string]int{}},
		clock: clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		hosts: map[string]*fakeHost{},
	}
	if wc.hostMemoryMB == nil {
		wc.hostMemoryMB = []int{4096}
	}
	if wc.maxSandboxes == 0 {
		wc.maxSandboxes = 64
	}
	for i, mem := range wc.hostMemoryMB {
		id := fmt.Sprintf("host-%d", i)
		w.hosts[id] = &fakeHost{w: w, id: id}
		if err := svc.Heartbeat(placement.HostStatus{HostID: id, MemoryMB: mem, MaxSandboxes: wc.maxSandboxes}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := New(Config{
		Placement: w.place,
		Hosts: func(id string) (Host, bool) {
			h, ok := w.hosts[id]
			return h, ok
		},
		KeepAlive:          wc.keepAlive,
		ReapInterval:       wc.reapInterval,
		AccountConcurrency: wc.accountConcurrency,
		ScaleOutRate:       wc.scaleOutRate,
		ScaleOutBurst:      wc.scaleOutBurst,
		Leases:             wc.leases,
		Clock:              w.clock,
		Logger:             logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.m = m
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
		w.checkClean()
	})
	return w
}

func (w *world) violation(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.violations = append(w.violations, fmt.Sprintf(format, args...))
}

// checkClean fails the test on any recorded misuse.
func (w *world) checkClean() {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		w.t.Error(v)
	}
	w.place.mu.Lock()
	defer w.place.mu.Unlock()
	for id, n := range w.place.released {
		if n > 1 {
			w.t.Errorf("reservation %s released %d times", id, n)
		}
	}
}

// sandboxes lists every sandbox created so far, across hosts.
func (w *world) sandboxes() []*fakeSandbox {
	var out []*fakeSandbox
	for _, h := range w.hosts {
		h.mu.Lock()
		out = append(out, h.created...)
		h.mu.Unlock()
	}
	return out
}

func (w *world) sandbox(id string) *fakeSandbox {
	w.t.Helper()
	for _, sb := range w.sandboxes() {
		if sb.id == id {
			return sb
		}
	}
	w.t.Fatalf("no sandbox %s", id)
	return nil
}

// reservedMB is the memory placement holds across all hosts.
func (w *world) reservedMB() int {
	n := 0
	for _, h := range w.svc.Hosts() {
		n += h.ReservedMB
	}
	return n
}

// countingPlacer wraps the real placement service and records every
// reservation's releases, so tests see double or stray releases.
type countingPlacer struct {
	svc *placement.Service

	mu       sync.Mutex
	live     map[string]bool // placed and not yet released
	released map[string]int  // release count per reservation id
	places   int
}

func (c *countingPlacer) Place(ctx context.Context, req placement.Request) (placement.Reservation, error) {
	r, err := c.svc.Place(ctx, req)
	if err == nil {
		c.mu.Lock()
		c.live[r.ID] = true
		c.places++
		c.mu.Unlock()
	}
	return r, err
}

func (c *countingPlacer) Release(r placement.Reservation) {
	c.mu.Lock()
	c.released[r.ID]++
	delete(c.live, r.ID)
	c.mu.Unlock()
	c.svc.Release(r)
}

// Drop lets the manager drop an unreachable host, as it does with
// *placement.Service.
func (c *countingPlacer) Drop(hostID string) { c.svc.Drop(hostID) }

func (c *countingPlacer) outstanding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.live)
}

type fakeHost struct {
	w  *world
	id string

	// create, when set, runs at the start of CreateSandbox; an error fails
	// the creation.
	create func(ctx context.Context) error

	mu      sync.Mutex
	created []*fakeSandbox
}

func (h *fakeHost) CreateSandbox(ctx context.Context, fn *lambdafn.Function) (Sandbox, error) {
	if h.create != nil {
		if err := h.create(ctx); err != nil {
			return nil, err
		}
	}
	sb := &fakeSandbox{w: h.w, id: fmt.Sprintf("sb-%d", h.w.sandboxSeq.Add(1)), key: fn.SandboxKey(), version: fn.Version,
		slots: int32(fn.MaxConcurrency())}
	sb.healthy.Store(true)
	h.mu.Lock()
	h.created = append(h.created, sb)
	h.mu.Unlock()
	if h.w.initErr != nil {
		// The world's sandboxes have the optional Init ability.
		return &initSandbox{sb}, nil
	}
	return sb, nil
}

// initSandbox is a fakeSandbox with the optional Initializer ability.
type initSandbox struct{ *fakeSandbox }

func (s *initSandbox) Init(ctx context.Context) error {
	if n := s.inits.Add(1); n > 1 {
		s.w.violation("sandbox %s initialised %d times", s.id, n)
	}
	if s.invokes.Load() > 0 {
		s.w.violation("sandbox %s initialised after an invocation", s.id)
	}
	return s.w.initErr(s.fakeSandbox)
}

var _ Initializer = (*initSandbox)(nil)

type fakeSandbox struct {
	w       *world
	id      string
	key     string
	version string
	slots   int32 // invocations it may run at once

	healthy   atomic.Bool
	inFlight  atomic.Int32
	invokes   atomic.Int32
	destroyed atomic.Int32
	inits     atomic.Int32
}

func (s *fakeSandbox) ID() string { return s.id }

func (s *fakeSandbox) Healthy() bool { return s.healthy.Load() }

func (s *fakeSandbox) Invoke(ctx context.Context, req invocation.Request) (invocation.Result, error) {
	if s.destroyed.Load() > 0 {
		s.w.violation("sandbox %s invoked after Destroy", s.id)
	}
	if n := s.inFlight.Add(1); n > s.slots {
		s.w.violation("sandbox %s runs %d invocations at once", s.id, n)
	}
	defer s.inFlight.Add(-1)
	n := s.w.inFlight.Add(1)
	defer s.w.inFlight.Add(-1)
	for {
		m := s.w.maxFlight.Load()
		if n <= m || s.w.maxFlight.CompareAndSwap(m, n) {
			break
		}
	}
	first := s.invokes.Add(1) == 1
	if s.w.invoke != nil {
		return s.w.invoke(ctx, s, req)
	}
	res := invocation.Result{RequestID: req.RequestID, Payload: req.Payload, SandboxID: s.id, ExecutedVersion: s.version}
	if first && s.inits.Load() == 0 {
		res.InitDuration = time.Millisecond // the runtime's init ran inside this first Invoke
	}
	return res, nil
}

func (s *fakeSandbox) Destroy(ctx context.Context) error {
	if s.inFlight.Load() > 0 {
		s.w.violation("sandbox %s destroyed during an invocation", s.id)
	}
	if n := s.destroyed.Add(1); n > 1 {
		s.w.violation("sandbox %s destroyed %d times", s.id, n)
	}
	return nil
}

var _ Host = (*fakeHost)(nil)
var _ Sandbox = (*fakeSandbox)(nil)

// settledGoroutines waits until the goroutine count drops to at most n.
func settledGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutine leak: %d > %d\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testFunction(name string) *lambdafn.Function {
	return &lambdafn.Function{
		Account:    "123456789012",
		Region:     "us-east-1",
		Name:       name,
		Version:    lambdafn.LatestVersion,
		RevisionID: "rev-1",
		MemorySize: 128,
		Timeout:    3,
		CodeDigest: "c0de",
	}
}
