package workermanager

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/flintdev/flint/internal/invocation"
)

// A sandbox whose runtime died after its last invocation (it looked
// healthy when it went idle) does not take the next event: the manager
// destroys it and runs the invocation on a fresh sandbox; the caller sees
// only the result.
func TestUndeliveredRunsOnFreshSandbox(t *testing.T) {
	w := newWorld(t, worldConfig{})
	fn := testFunction("crashy")
	ctx := context.Background()
	res, err := w.m.Invoke(ctx, fn, invocation.Request{RequestID: "r1", Payload: []byte(`1`)})
	if err != nil {
		t.Fatal(err)
	}
	dead := res.SandboxID
	w.invoke = func(_ context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		if sb.id == dead {
			sb.healthy.Store(false)
			return invocation.Result{}, fmt.Errorf("runtime exited before taking %s: %w", req.RequestID, invocation.ErrNotDelivered)
		}
		return invocation.Result{RequestID: req.RequestID, Payload: req.Payload, SandboxID: sb.id}, nil
	}
	res, err = w.m.Invoke(ctx, fn, invocation.Request{RequestID: "r2", Payload: []byte(`2`)})
	if err != nil {
		t.Fatalf("invoke after the runtime died: %v", err)
	}
	if res.SandboxID == dead || !res.ColdStart || string(res.Payload) != "2" {
		t.Fatalf("result %+v: want a cold start on a new sandbox", res)
	}
	if w.sandbox(dead).destroyed.Load() != 1 {
		t.Fatalf("dead sandbox destroyed %d times", w.sandbox(dead).destroyed.Load())
	}

	// Bounded: a function whose every sandbox fails to take the event
	// gives up after maxDeliveries sandboxes.
	w.invoke = func(_ context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		sb.healthy.Store(false)
		return invocation.Result{}, fmt.Errorf("never delivered: %w", invocation.ErrNotDelivered)
	}
	before := len(w.sandboxes())
	if _, err := w.m.Invoke(ctx, fn, invocation.Request{RequestID: "r3"}); !errors.Is(err, invocation.ErrNotDelivered) {
		t.Fatalf("err %v, want ErrNotDelivered", err)
	}
	// The idle sandbox of r2 is tried first, then new ones.
	if got := len(w.sandboxes()) - before; got != maxDeliveries-1 {
		t.Fatalf("%d sandboxes created for r3, want %d", got, maxDeliveries-1)
	}
}
