package workermanager

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/polltest"
)

func TestRetire(t *testing.T) {
	w := newWorld(t, worldConfig{})
	fnA := testFunction("doomed")
	fnA1 := testFunction("doomed")
	fnA1.Version = "1"
	fnB := testFunction("survivor")

	g := newGate(1)
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		if req.RequestID == "busy" {
			g.wait(sb)
		}
		return invocation.Result{RequestID: req.RequestID, Payload: req.Payload}, nil
	}
	idleA := invoke(t, w, fnA, "a")
	idleA1 := invoke(t, w, fnA1, "a1")
	idleB := invoke(t, w, fnB, "b")
	busyDone := make(chan invocation.Result, 1)
	go func() {
		res, err := w.m.Invoke(context.Background(), fnA, invocation.Request{RequestID: "busy"})
		if err != nil {
			t.Error(err)
		}
		busyDone <- res
	}()
	busyID := g.await(t, 1)[0]
	if busyID != idleA.SandboxID {
		t.Fatalf("busy invocation ran in %s, want the warm %s", busyID, idleA.SandboxID)
	}
	// Put a second A sandbox in the idle pool next to the busy one.
	idleA2 := invoke(t, w, fnA, "a2")

	if err := w.m.Retire(context.Background(), fnA.Account, fnA.Name); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{idleA1.SandboxID, idleA2.SandboxID} {
		if w.sandbox(id).destroyed.Load() != 1 {
			t.Fatalf("idle sandbox %s of the retired function not destroyed", id)
		}
	}
	if w.sandbox(busyID).destroyed.Load() != 0 {
		t.Fatal("busy sandbox destroyed during its invocation")
	}
	if w.sandbox(idleB.SandboxID).destroyed.Load() != 0 {
		t.Fatal("another function's sandbox destroyed")
	}

	g.release()
	if res := <-busyDone; res.SandboxID != busyID {
		t.Fatalf("busy invocation result %+v", res)
	}
	polltest.Until(t, 10*time.Second, "the busy sandbox to be destroyed", func() bool { return w.sandbox(busyID).destroyed.Load() == 1 })
	st := w.m.Stats()
	if _, ok := st.Pools[fnA.SandboxKey()]; ok || st.Idle != 1 || st.Pools[fnB.SandboxKey()].Idle != 1 {
		t.Fatalf("stats after retire: %+v", st)
	}
	if got := w.reservedMB(); got != 128 {
		t.Fatalf("placement holds %d MB, want 128 (survivor only)", got)
	}
	if res := invoke(t, w, fnA, "again"); !res.ColdStart {
		t.Fatal("retired function served warm")
	}
}

func TestRetireDuringCreation(t *testing.T) {
	w := newWorld(t, worldConfig{})
	fn := testFunction("young")
	creating := make(chan struct{})
	proceed := make(chan struct{})
	w.hosts["host-0"].create = func(ctx context.Context) error {
		close(creating)
		<-proceed
		return nil
	}
	done := make(chan invocation.Result, 1)
	go func() {
		res, err := w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: "r"})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	<-creating
	if st := w.m.Stats(); st.Creating != 1 {
		t.Fatalf("stats during creation: %+v", st)
	}
	if err := w.m.Retire(context.Background(), fn.Account, fn.Name); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	res := <-done
	polltest.Until(t, 10*time.Second, "the retired new sandbox to be destroyed", func() bool { return w.sandbox(res.SandboxID).destroyed.Load() == 1 })
	if w.reservedMB() != 0 {
		t.Fatal("reservation kept")
	}
}

func TestKeepAliveReaping(t *testing.T) {
	w := newWorld(t, worldConfig{keepAlive: time.Minute, reapInterval: time.Millisecond})
	fn := testFunction("sleepy")
	// Two sandboxes, idle since t0.
	g, wg := holdInvocations(t, w, fn, 2)
	g.release()
	wg.Wait()

	// At t0+40s one of them is used again: its idle time restarts.
	w.clock.Advance(40 * time.Second)
	used := invoke(t, w, fn, "touch")
	if used.ColdStart {
		t.Fatal("cold start with two idle sandboxes")
	}
	w.m.reap() // t0+40s: nothing is older than a minute
	if st := w.m.Stats(); st.Idle != 2 {
		t.Fatalf("reaped too early: %+v", st)
	}

	// At t0+61s the untouched one expires; the reaper goroutine finds it.
	w.clock.Advance(21 * time.Second)
	polltest.Until(t, 10*time.Second, "the reaper to destroy the expired sandbox", func() bool { return w.m.Stats().Idle == 1 })
	// The entry leaves the idle list before Destroy and Release run.
	polltest.Until(t, 10*time.Second, "the reaper to release the expired sandbox", func() bool { return w.place.outstanding() == 1 })
	for _, sb := range w.sandboxes() {
		want := int32(1)
		if sb.id == used.SandboxID {
			want = 0
		}
		if sb.destroyed.Load() != want {
			t.Fatalf("sandbox %s destroyed %d times, want %d", sb.id, sb.destroyed.Load(), want)
		}
	}
	if got := w.reservedMB(); got != 128 {
		t.Fatalf("placement holds %d MB after reaping, want 128", got)
	}

	// At t0+101s the other one goes too.
	w.clock.Advance(40 * time.Second)
	polltest.Until(t, 10*time.Second, "the reaper to destroy the last sandbox", func() bool { return w.m.Stats().Idle == 0 })
	polltest.Until(t, 10*time.Second, "the reaper to release the last sandbox", func() bool { return w.place.outstanding() == 0 })
	if w.reservedMB() != 0 || w.place.outstanding() != 0 {
		t.Fatal("reservations kept after reaping")
	}
	if res := invoke(t, w, fn, "later"); !res.ColdStart {
		t.Fatal("warm start after every sandbox was reaped")
	}
}

func TestCloseDestroysEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	w := newWorld(t, worldConfig{reapInterval: time.Millisecond})
	fnA, fnB := testFunction("a"), testFunction("b")
	g := newGate(1)
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		if req.RequestID == "busy" {
			g.wait(sb)
		}
		return invocation.Result{RequestID: req.RequestID}, nil
	}
	invoke(t, w, fnA, "a")
	invoke(t, w, fnB, "b")
	busyErr := make(chan error, 1)
	go func() {
		_, err := w.m.Invoke(context.Background(), fnB, invocation.Request{RequestID: "busy"})
		busyErr <- err
	}()
	busyID := g.await(t, 1)[0]

	// A Close whose ctx ends while the invocation runs reports it.
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	err := w.m.Close(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 invocation(s) still running") {
		t.Fatalf("Close with a busy sandbox and a short ctx: %v", err)
	}
	if _, err := w.m.Invoke(context.Background(), fnA, invocation.Request{RequestID: "late"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Invoke after Close: err = %v, want ErrClosed", err)
	}
	for _, sb := range w.sandboxes() {
		want := int32(1)
		if sb.id == busyID {
			want = 0
		}
		if got := sb.destroyed.Load(); got != want {
			t.Fatalf("sandbox %s destroyed %d times, want %d", sb.id, got, want)
		}
	}

	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- w.m.Close(ctx)
	}()
	g.release()
	if err := <-busyErr; err != nil {
		t.Fatalf("the running invocation failed: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if w.sandbox(busyID).destroyed.Load() != 1 {
		t.Fatal("busy sandbox not destroyed when Close returned")
	}
	if w.place.outstanding() != 0 || w.reservedMB() != 0 {
		t.Fatal("reservations left after Close")
	}
	if st := w.m.Stats(); st.Idle+st.Busy+st.Creating != 0 {
		t.Fatalf("stats after Close: %+v", st)
	}
	settledGoroutines(t, before)
}
