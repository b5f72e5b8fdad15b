package workermanager

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/polltest"
)

// throttleReason returns the Reason of a TooManyRequestsException in err,
// or "" when err is not one.
func throttleReason(err error) string {
	var le *lambdaerr.Error
	if errors.As(err, &le) && le.Type == lambdaerr.TooManyRequests {
		return le.Reason
	}
	return ""
}

// burst starts n invocations of fn at once; held ones wait at g. It
// returns, once every refused one has come back, the refused errors, and a
// wait function for the rest.
func burst(t *testing.T, w *world, fn *metadata.Function, n, admitted int, g *gate) (refused []error, wait func()) {
	t.Helper()
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		g.wait(sb)
		return invocation.Result{RequestID: req.RequestID}, nil
	}
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: fmt.Sprintf("r-%d", i)})
			errs <- err
		}()
	}
	// The admitted ones reach their sandboxes and stay there; every other
	// one must come back refused while they are held: nothing waits.
	g.await(t, admitted)
	deadline := time.After(10 * time.Second)
	for len(refused) < n-admitted {
		select {
		case err := <-errs:
			if err == nil {
				t.Fatal("an invocation over the limit succeeded while the admitted ones were held")
			}
			refused = append(refused, err)
		case <-deadline:
			t.Fatalf("only %d of %d refusals came back while the admitted invocations were held", len(refused), n-admitted)
		}
	}
	return refused, func() {
		g.release()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("admitted invocation: %v", err)
			}
		}
	}
}

func TestReservedConcurrencyThrottlesAtOnce(t *testing.T) {
	base := runtime.NumGoroutine()
	w := newWorld(t, worldConfig{})
	fn := testFunction("reserved")
	w.m.SetReservedConcurrency(fn.Account, fn.Name, 2)
	g := newGate(20)
	refused, wait := burst(t, w, fn, 20, 2, g)
	for _, err := range refused {
		if r := throttleReason(err); r != concurrency.ReasonReserved {
			t.Fatalf("refusal %v: reason %q, want %s", err, r, concurrency.ReasonReserved)
		}
	}
	if got := w.maxFlight.Load(); got != 2 {
		t.Fatalf("max concurrent invocations %d, want 2", got)
	}
	wait()
	if got := w.maxFlight.Load(); got > 2 {
		t.Fatalf("max concurrent invocations %d after the burst, want <= 2", got)
	}
	// The slots came back: the next invocation runs.
	w.invoke = nil
	invoke(t, w, fn, "after")
	// Other functions are not affected by the reservation.
	invoke(t, w, testFunction("other"), "other")
	settledGoroutines(t, base+2) // the reaper and the world's own
}

func TestAccountLimit(t *testing.T) {
	w := newWorld(t, worldConfig{accountConcurrency: 3})
	fnA, fnB := testFunction("a"), testFunction("b")
	g := newGate(4)
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		g.wait(sb)
		return invocation.Result{RequestID: req.RequestID}, nil
	}
	var wg sync.WaitGroup
	for i, fn := range []*metadata.Function{fnA, fnB, fnA} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: fmt.Sprint(i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	g.await(t, 3)
	_, err := w.m.Invoke(context.Background(), fnB, invocation.Request{RequestID: "fourth"})
	if r := throttleReason(err); r != concurrency.ReasonAccount {
		t.Fatalf("fourth invocation: %v (reason %q), want %s", err, r, concurrency.ReasonAccount)
	}
	g.release()
	wg.Wait()
	w.invoke = nil
	invoke(t, w, fnB, "after")

	// Reserving 2 of the 3 for a leaves 1 for everyone else.
	w.m.SetReservedConcurrency(fnA.Account, fnA.Name, 2)
	if n := w.m.UnreservedConcurrency(fnA.Account); n != 1 {
		t.Fatalf("unreserved = %d, want 1", n)
	}
	// Reserved 0 disables a function.
	w.m.SetReservedConcurrency(fnB.Account, fnB.Name, 0)
	_, err = w.m.Invoke(context.Background(), fnB, invocation.Request{RequestID: "disabled"})
	if r := throttleReason(err); r != concurrency.ReasonReserved {
		t.Fatalf("disabled function: %v (reason %q), want %s", err, r, concurrency.ReasonReserved)
	}
	w.m.ClearReservedConcurrency(fnB.Account, fnB.Name)
	invoke(t, w, fnB, "enabled again")
}

func TestScaleOutRate(t *testing.T) {
	w := newWorld(t, worldConfig{scaleOutRate: 1, scaleOutBurst: 2})
	fn := testFunction("scaling")
	g := newGate(3)
	refused, wait := burst(t, w, fn, 3, 2, g)
	if r := throttleReason(refused[0]); r != concurrency.ReasonScaleRate {
		t.Fatalf("third cold start: %v (reason %q), want %s", refused[0], r, concurrency.ReasonScaleRate)
	}
	wait()
	// Warm starts take no token.
	w.invoke = nil
	for i := range 5 {
		if res := invoke(t, w, fn, fmt.Sprint("warm-", i)); res.ColdStart {
			t.Fatalf("warm-%d was a cold start", i)
		}
	}
	// After a second (by the clock) one more sandbox may be created.
	w.clock.Advance(time.Second)
	refused, wait = burst(t, w, fn, 4, 3, newGate(4))
	if r := throttleReason(refused[0]); r != concurrency.ReasonScaleRate {
		t.Fatalf("cold start over the refilled bucket: %v", refused[0])
	}
	wait()
}

func TestProvisionedConcurrency(t *testing.T) {
	w := newWorld(t, worldConfig{keepAlive: time.Minute, reapInterval: time.Millisecond})
	w.initErr = func(*fakeSandbox) error { return nil }
	fn := testFunction("provisioned")
	fn.Version = "1"
	const n = 3
	if err := w.m.SetProvisionedConcurrency(fn, n); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 10*time.Second, "provisioned sandboxes ready", func() bool {
		st, ok := w.m.ProvisionedConcurrency(fn)
		return ok && st.Status == concurrency.StatusReady
	})
	st, _ := w.m.ProvisionedConcurrency(fn)
	if st.Requested != n || st.Allocated != n || st.Available != n {
		t.Fatalf("status %+v", st)
	}
	if len(w.sandboxes()) != n {
		t.Fatalf("%d sandboxes before the first invocation, want %d", len(w.sandboxes()), n)
	}
	for _, sb := range w.sandboxes() {
		if sb.inits.Load() != 1 {
			t.Fatalf("sandbox %s initialised %d times before use", sb.id, sb.inits.Load())
		}
	}
	// Idle far past keep-alive: provisioned sandboxes stay.
	w.clock.Advance(time.Hour)
	time.Sleep(20 * time.Millisecond) // let the 1 ms reaper run many times
	if got := w.m.Stats().Pools[fn.SandboxKey()]; got.Idle != n || got.Provisioned != n {
		t.Fatalf("after keep-alive: %+v", got)
	}

	// The first n concurrent invocations are all warm and report no init.
	g := newGate(n)
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		g.wait(sb)
		return invocation.Result{RequestID: req.RequestID}, nil
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: fmt.Sprint(i)})
			if err != nil || res.ColdStart || res.InitDuration != 0 {
				t.Errorf("invocation %d: %+v, %v; want warm", i, res, err)
			}
		}()
	}
	g.await(t, n)
	if st, _ := w.m.ProvisionedConcurrency(fn); st.Available != 0 || st.Allocated != n {
		t.Fatalf("while busy: %+v", st)
	}
	g.release()
	wg.Wait()
	if len(w.sandboxes()) != n {
		t.Fatalf("%d sandboxes after %d invocations, want %d", len(w.sandboxes()), n, n)
	}

	// A provisioned sandbox that dies is replaced.
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		sb.healthy.Store(false)
		return invocation.Result{RequestID: req.RequestID, FunctionError: invocation.ErrorUnhandled}, nil
	}
	invoke(t, w, fn, "crash")
	polltest.Until(t, 10*time.Second, "the dead sandbox replaced", func() bool {
		st, _ := w.m.ProvisionedConcurrency(fn)
		return st.Status == concurrency.StatusReady && len(w.sandboxes()) == n+1
	})

	// Cleared: the sandboxes become ordinary and age out.
	w.m.ClearProvisionedConcurrency(fn)
	if _, ok := w.m.ProvisionedConcurrency(fn); ok {
		t.Fatal("status after clear")
	}
	w.clock.Advance(2 * time.Minute)
	polltest.Until(t, 10*time.Second, "former provisioned sandboxes reaped", func() bool { return w.m.Stats().Idle == 0 })
}

func TestProvisionedInitFailure(t *testing.T) {
	w := newWorld(t, worldConfig{})
	w.initErr = func(*fakeSandbox) error { return errors.New("handler not found") }
	fn := testFunction("broken")
	fn.Version = "2"
	if err := w.m.SetProvisionedConcurrency(fn, 2); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 10*time.Second, "status FAILED", func() bool {
		st, _ := w.m.ProvisionedConcurrency(fn)
		return st.Status == concurrency.StatusFailed
	})
	st, _ := w.m.ProvisionedConcurrency(fn)
	if st.Allocated != 0 || st.StatusReason == "" {
		t.Fatalf("status %+v", st)
	}
	polltest.Until(t, 10*time.Second, "failed sandboxes destroyed and released", func() bool {
		for _, sb := range w.sandboxes() {
			if sb.destroyed.Load() != 1 {
				return false
			}
		}
		return w.place.outstanding() == 0
	})
}

func TestRetireVersionKeepsOtherVersions(t *testing.T) {
	w := newWorld(t, worldConfig{})
	latest := testFunction("versioned")
	v1 := testFunction("versioned")
	v1.Version = "1"
	invoke(t, w, latest, "latest")
	invoke(t, w, v1, "v1")
	if err := w.m.RetireVersion(context.Background(), latest.Account, latest.Name, metadata.LatestVersion); err != nil {
		t.Fatal(err)
	}
	st := w.m.Stats()
	if _, ok := st.Pools[latest.SandboxKey()]; ok {
		t.Fatalf("$LATEST pool survived: %+v", st)
	}
	if st.Pools[v1.SandboxKey()].Idle != 1 {
		t.Fatalf("version 1's sandbox retired: %+v", st)
	}
	if res := invoke(t, w, v1, "v1 again"); res.ColdStart || res.ExecutedVersion != "1" {
		t.Fatalf("version 1 after retiring $LATEST: %+v", res)
	}
}

func TestCloseStopsProvisioning(t *testing.T) {
	base := runtime.NumGoroutine()
	w := newWorld(t, worldConfig{})
	started := make(chan struct{}, 8)
	for _, h := range w.hosts {
		h.create = func(ctx context.Context) error {
			started <- struct{}{}
			<-ctx.Done() // a host that takes forever, until canceled
			return ctx.Err()
		}
	}
	fn := testFunction("stuck")
	fn.Version = "1"
	if err := w.m.SetProvisionedConcurrency(fn, 3); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("provisioning did not start")
		}
	}
	if st, _ := w.m.ProvisionedConcurrency(fn); st.Status != concurrency.StatusInProgress || st.Allocated != 0 {
		t.Fatalf("status while creating: %+v", st)
	}
	if st := w.m.Stats(); st.Creating != 3 || st.Pools[fn.SandboxKey()].Provisioned != 3 {
		t.Fatalf("stats while creating: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if w.place.outstanding() != 0 {
		t.Fatalf("%d reservations left after Close", w.place.outstanding())
	}
	if err := w.m.SetProvisionedConcurrency(fn, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("provisioning after Close: %v", err)
	}
	settledGoroutines(t, base)
}
