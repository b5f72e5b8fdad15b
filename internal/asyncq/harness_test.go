package asyncq

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/clock"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/polltest"
)

const testAccount = "123456789012"

// testVersions are the versions every fake function has.
var testVersions = map[string]bool{metadata.LatestVersion: true, "1": true, "2": true, "3": true}

// fakeFunctions is an in-memory FunctionGetter.
type fakeFunctions struct {
	mu  sync.Mutex
	fns map[string]*metadata.Function // name -> $LATEST
}

func (f *fakeFunctions) add(name, dlq string) *metadata.Function {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fns == nil {
		f.fns = map[string]*metadata.Function{}
	}
	fn := &metadata.Function{Account: testAccount, Region: "us-east-1", Name: name, Version: metadata.LatestVersion, DeadLetterTargetArn: dlq}
	f.fns[name] = fn
	return fn
}

func (f *fakeFunctions) Get(_ context.Context, account, name, version string) (*metadata.Function, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn, ok := f.fns[name]
	if !ok || account != testAccount || !testVersions[version] {
		return nil, lambdaerr.New(lambdaerr.ResourceNotFound, "Function not found: %s:%s", name, version)
	}
	c := *fn
	c.Version = version
	return &c, nil
}

// Resolve resolves the fake's versions; alias "live" names version 1.
func (f *fakeFunctions) Resolve(ctx context.Context, account, name, qualifier string) (*metadata.Function, *metadata.Alias, error) {
	if qualifier != "live" {
		fn, err := f.Get(ctx, account, name, qualifier)
		return fn, nil, err
	}
	fn, err := f.Get(ctx, account, name, "1")
	if err != nil {
		return nil, nil, err
	}
	return fn, &metadata.Alias{Account: account, Region: fn.Region, FunctionName: name, Name: qualifier, FunctionVersion: "1"}, nil
}

// behavior scripts one function of the fake invoker.
type behavior struct {
	failTimes     int           // first N attempts end in a function error
	throttleTimes int           // first N attempts are throttled
	delay         time.Duration // each invocation takes this long
	block         chan struct{} // when set, invocations wait for it (or ctx)
}

// call is one recorded invocation.
type call struct {
	function, requestID string
	version, invokedARN string
	payload             []byte
	at                  time.Time
}

// fakeInvoker is the synchronous path: scripted per function, recording
// every call.
type fakeInvoker struct {
	mu       sync.Mutex
	behavior map[string]*behavior
	attempts map[string]int // by function/requestID
	calls    []call
	running  atomic.Int32
}

func newFakeInvoker() *fakeInvoker {
	return &fakeInvoker{behavior: map[string]*behavior{}, attempts: map[string]int{}}
}

func (f *fakeInvoker) set(fn string, b *behavior) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.behavior[fn] = b
}

func (f *fakeInvoker) Invoke(ctx context.Context, fn *metadata.Function, req invocation.Request) (invocation.Result, error) {
	f.running.Add(1)
	defer f.running.Add(-1)
	f.mu.Lock()
	b := f.behavior[fn.Name]
	if b == nil {
		b = &behavior{}
	}
	k := fn.Name + "/" + req.RequestID
	f.attempts[k]++
	n := f.attempts[k]
	f.calls = append(f.calls, call{function: fn.Name, requestID: req.RequestID, version: fn.Version, invokedARN: req.InvokedFunctionARN,
		payload: req.Payload, at: time.Now()})
	f.mu.Unlock()
	if b.block != nil {
		select {
		case <-b.block:
		case <-ctx.Done():
			return invocation.Result{}, ctx.Err()
		}
	}
	if b.delay > 0 {
		select {
		case <-time.After(b.delay):
		case <-ctx.Done():
			return invocation.Result{}, ctx.Err()
		}
	}
	if n <= b.throttleTimes {
		return invocation.Result{}, &lambdaerr.Error{Type: lambdaerr.TooManyRequests, Message: "Rate Exceeded.", Reason: "ReservedFunctionConcurrentInvocationLimitExceeded"}
	}
	if n <= b.throttleTimes+b.failTimes {
		doc := fmt.Sprintf(`{"errorMessage":"boom %d","errorType":"Error"}`, n)
		return invocation.Result{RequestID: req.RequestID, Payload: []byte(doc), FunctionError: invocation.ErrorUnhandled, ErrorType: "Error", ExecutedVersion: fn.Version}, nil
	}
	resp, _ := json.Marshal(map[string]any{"ok": true, "echo": json.RawMessage(orNull(req.Payload))})
	return invocation.Result{RequestID: req.RequestID, Payload: resp, ExecutedVersion: fn.Version}, nil
}

func orNull(b []byte) []byte {
	if len(b) == 0 || !json.Valid(b) {
		return []byte("null")
	}
	return b
}

func (f *fakeInvoker) callsOf(fn string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.function == fn {
			out = append(out, c)
		}
	}
	return out
}

// fakeClock is a settable clock: the wall clock until set. Its timers
// are the wall clock's.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}

func (c *fakeClock) NewTimer(d time.Duration) clock.Timer { return clock.Real.NewTimer(d) }

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

type env struct {
	t     *testing.T
	dir   string
	bb    *backbone.Backbone
	fns   *fakeFunctions
	inv   *fakeInvoker
	clock *fakeClock
	svc   *Service
}

func testConfig(e *env) Config {
	return Config{
		JetStream:          e.bb.JetStream(),
		Invoker:            e.inv,
		Functions:          e.fns,
		Clock:              e.clock,
		RetryDelays:        []time.Duration{20 * time.Millisecond, 40 * time.Millisecond},
		ThrottleBackoffMin: 10 * time.Millisecond,
		ThrottleBackoffMax: 50 * time.Millisecond,
		AckWait:            2 * time.Second,
		FetchWait:          200 * time.Millisecond,
		IdleTimeout:        time.Second,
		DiscoverInterval:   200 * time.Millisecond,
		DefaultAccount:     testAccount,
		Logger:             slog.New(slog.NewTextHandler(e.t.Output(), nil)),
	}
}

// newEnv starts a backbone in a temp dir and a started Service.
func newEnv(t *testing.T, mod func(*Config)) *env { return newEnvStart(t, mod, true) }

func newEnvStart(t *testing.T, mod func(*Config), start bool) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), fns: &fakeFunctions{}, inv: newFakeInvoker(), clock: &fakeClock{}}
	bb, err := backbone.Start(backbone.Config{DataDir: e.dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	e.bb = bb
	t.Cleanup(func() { e.bb.Close() })
	e.startService(mod, start)
	return e
}

// startService creates a Service on e's backbone, started when start.
func (e *env) startService(mod func(*Config), start bool) {
	e.t.Helper()
	cfg := testConfig(e)
	if mod != nil {
		mod(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if start {
		if err := svc.Start(); err != nil {
			e.t.Fatal(err)
		}
	}
	e.svc = svc
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = svc.Close(ctx)
	})
}

func (e *env) enqueue(fn *metadata.Function, id, payload string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.svc.Enqueue(ctx, fn, invocation.Request{RequestID: id, Payload: []byte(payload)}); err != nil {
		e.t.Fatalf("enqueue %s: %v", id, err)
	}
}

// waitStatus waits for the request's status to be terminal and returns it.
func (e *env) waitStatus(id string, want string) *Status {
	e.t.Helper()
	var st *Status
	polltest.Until(e.t, 20*time.Second, "status "+want+" of "+id, func() bool {
		s, err := e.svc.Status(context.Background(), id)
		if err != nil {
			return false
		}
		st = s
		return s.Status == want && (s.Delivered || !s.terminal())
	})
	return st
}

func intp(i int) *int { return &i }
