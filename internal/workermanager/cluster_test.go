package workermanager

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/polltest"
)

func hostListed(w *world, id string) bool {
	for _, h := range w.svc.Hosts() {
		if h.HostID == id {
			return true
		}
	}
	return false
}

// TestUnreachableHostDroppedAndSkipped: a cold start placed on a host that
// cannot be reached goes to another host, and the unreachable one leaves
// placement at once.
func TestUnreachableHostDroppedAndSkipped(t *testing.T) {
	w := newWorld(t, worldConfig{hostMemoryMB: []int{4096, 4096}})
	w.hosts["host-0"].create = func(context.Context) error {
		return fmt.Errorf("dial: %w", ErrHostUnreachable)
	}
	res, err := w.m.Invoke(context.Background(), testFunction("f"), invocation.Request{RequestID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.ColdStart || len(w.hosts["host-1"].created) != 1 {
		t.Fatalf("result %+v; host-1 created %d", res, len(w.hosts["host-1"].created))
	}
	if hostListed(w, "host-0") {
		t.Fatal("unreachable host-0 still in placement")
	}
	if w.place.outstanding() != 1 {
		t.Fatalf("%d reservations outstanding, want 1 (the live sandbox)", w.place.outstanding())
	}
}

// TestFullHostSkipped: a host that refuses for lack of capacity (another
// frontend filled it first) is skipped but stays in placement.
func TestFullHostSkipped(t *testing.T) {
	w := newWorld(t, worldConfig{hostMemoryMB: []int{4096, 4096}})
	w.hosts["host-0"].create = func(context.Context) error { return ErrHostFull }
	if _, err := w.m.Invoke(context.Background(), testFunction("f"), invocation.Request{RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	if len(w.hosts["host-1"].created) != 1 || !hostListed(w, "host-0") {
		t.Fatalf("host-1 created %d; host-0 listed %v", len(w.hosts["host-1"].created), hostListed(w, "host-0"))
	}
	// Every host full: once each has refused, the invocation is throttled
	// as when placement finds no room.
	w.hosts["host-1"].create = func(context.Context) error { return ErrHostFull }
	if _, err := w.m.Invoke(context.Background(), testFunction("g"), invocation.Request{RequestID: "r2"}); !lambdaerr.Is(err, lambdaerr.TooManyRequests) {
		t.Fatalf("every host full: %v, want TooManyRequestsException", err)
	}
}

// TestWarmSandboxOnLostHost: a warm sandbox whose host cannot be reached
// never saw the request, so the invocation runs in a new sandbox.
func TestWarmSandboxOnLostHost(t *testing.T) {
	w := newWorld(t, worldConfig{hostMemoryMB: []int{4096, 4096}})
	ctx := context.Background()
	first, err := w.m.Invoke(ctx, testFunction("f"), invocation.Request{RequestID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		if sb.id == first.SandboxID {
			sb.healthy.Store(false)
			return invocation.Result{}, fmt.Errorf("connection refused: %w", ErrHostUnreachable)
		}
		return invocation.Result{RequestID: req.RequestID, SandboxID: sb.id}, nil
	}
	res, err := w.m.Invoke(ctx, testFunction("f"), invocation.Request{RequestID: "r2"})
	if err != nil {
		t.Fatal(err)
	}
	if res.SandboxID == first.SandboxID || !res.ColdStart {
		t.Fatalf("ran in %s (cold %v), want a new sandbox", res.SandboxID, res.ColdStart)
	}
	if w.sandbox(first.SandboxID).destroyed.Load() != 1 {
		t.Fatal("the lost sandbox was not destroyed")
	}
}

// TestForgetHost: the idle sandboxes of a host that left the cluster are
// forgotten and their reservations released; others stay.
func TestForgetHost(t *testing.T) {
	w := newWorld(t, worldConfig{hostMemoryMB: []int{128, 128}})
	ctx := context.Background()
	// Two concurrent invocations: one sandbox on each 128 MB host.
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(2)
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		started.Done()
		<-release
		return invocation.Result{RequestID: req.RequestID, SandboxID: sb.id}, nil
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := w.m.Invoke(ctx, testFunction("f"), invocation.Request{RequestID: fmt.Sprint(i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	started.Wait()
	close(release)
	wg.Wait()
	w.m.ForgetHost(ctx, "host-0")
	if st := w.m.Stats(); st.Idle != 1 {
		t.Fatalf("%d idle after forgetting host-0, want 1", st.Idle)
	}
	if w.place.outstanding() != 1 || len(w.hosts["host-0"].created) != 1 || w.hosts["host-0"].created[0].destroyed.Load() != 1 {
		t.Fatalf("outstanding %d, host-0's sandbox destroyed %d times", w.place.outstanding(), w.hosts["host-0"].created[0].destroyed.Load())
	}
}

// TestForgetHostReprovisions: provisioned sandboxes lost with their host
// are made again on the hosts that remain.
func TestForgetHostReprovisions(t *testing.T) {
	w := newWorld(t, worldConfig{hostMemoryMB: []int{4096, 4096}})
	w.initErr = func(*fakeSandbox) error { return nil }
	fn := testFunction("prov")
	fn.Version = "1"
	if err := w.m.SetProvisionedConcurrency(fn, 2); err != nil {
		t.Fatal(err)
	}
	ready := func() bool {
		st, ok := w.m.ProvisionedConcurrency(fn)
		return ok && st.Status == concurrency.StatusReady && st.Allocated == 2
	}
	polltest.Until(t, 10*time.Second, "provisioned sandboxes ready", ready)
	lost := "host-0"
	if len(w.hosts[lost].created) == 0 {
		lost = "host-1"
	}
	other := map[string]string{"host-0": "host-1", "host-1": "host-0"}[lost]
	before := len(w.hosts[other].created)
	w.svc.Drop(lost)
	w.m.ForgetHost(context.Background(), lost)
	polltest.Until(t, 10*time.Second, "the provisioned sandboxes made again on the other host", ready)
	if got := len(w.hosts[other].created) - before; got != len(w.hosts[lost].created) {
		t.Fatalf("%s got %d new sandboxes, want the %d lost with %s", other, got, len(w.hosts[lost].created), lost)
	}
}

// fakeLeaser records the leases the manager takes.
type fakeLeaser struct {
	mu       sync.Mutex
	held     map[string]int
	limits   map[string]int
	throttle bool
}

func (l *fakeLeaser) Acquire(ctx context.Context, key string, limit int, ttl time.Duration) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.throttle || l.held[key] >= limit {
		return nil, concurrency.Throttled(concurrency.ReasonReserved)
	}
	l.held[key]++
	l.limits[key] = limit
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.held[key]--
	}, nil
}

// TestReservedTakesClusterLease: only functions with reserved concurrency
// take a lease, with their limit; a refused lease frees the local slot.
func TestReservedTakesClusterLease(t *testing.T) {
	l := &fakeLeaser{held: map[string]int{}, limits: map[string]int{}}
	w := newWorld(t, worldConfig{leases: l})
	ctx := context.Background()
	if _, err := w.m.Invoke(ctx, testFunction("free"), invocation.Request{RequestID: "r0"}); err != nil {
		t.Fatal(err)
	}
	fn := testFunction("limited")
	w.m.SetReservedConcurrency(fn.Account, fn.Name, 1)
	if _, err := w.m.Invoke(ctx, fn, invocation.Request{RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	key := fn.Account + "." + fn.Name
	l.mu.Lock()
	if len(l.limits) != 1 || l.limits[key] != 1 || l.held[key] != 0 {
		t.Fatalf("leases: limits %v held %v, want one lease of limit 1 on %s, released", l.limits, l.held, key)
	}
	l.throttle = true // another node holds the only lease
	l.mu.Unlock()
	_, err := w.m.Invoke(ctx, fn, invocation.Request{RequestID: "r2"})
	if le := lambdaerr.As(err); le == nil || le.Reason != concurrency.ReasonReserved {
		t.Fatalf("lease refused: %v, want a reserved-concurrency throttle", err)
	}
	l.mu.Lock()
	l.throttle = false
	l.mu.Unlock()
	// The local slot of the refused invocation was freed.
	if _, err := w.m.Invoke(ctx, fn, invocation.Request{RequestID: "r3"}); err != nil {
		t.Fatal(err)
	}
}
