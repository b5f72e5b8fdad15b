package workermanager

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/polltest"
)

func multiSlotFunction(name string, slots int) *lambdafn.Function {
	fn := testFunction(name)
	fn.CapacityProvider = &lambdafn.CapacityProvider{Arn: "arn:aws:lambda:us-east-1:123456789012:capacity-provider:p",
		PerEnvMaxConcurrency: slots}
	return fn
}

// slotGate holds every fake invocation until opened.
type slotGate struct {
	open chan struct{}
	once sync.Once
}

func newSlotGate() *slotGate { return &slotGate{open: make(chan struct{})} }

func (g *slotGate) release() { g.once.Do(func() { close(g.open) }) }

func (g *slotGate) invoke(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
	<-g.open
	return invocation.Result{RequestID: req.RequestID, SandboxID: sb.id, ExecutedVersion: sb.version}, nil
}

// invokeN starts n invocations of fn and returns a function that waits for
// them and reports the sandbox each ran in.
func invokeN(t *testing.T, m *Manager, fn *lambdafn.Function, n int, prefix string) func() []string {
	t.Helper()
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := m.Invoke(context.Background(), fn, invocation.Request{RequestID: fmt.Sprintf("%s-%d", prefix, i)})
			ids[i], errs[i] = res.SandboxID, err
		}()
	}
	return func() []string {
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		return ids
	}
}

// TestMultiSlotSandboxes: with PerExecutionEnvironmentMaxConcurrency N a
// sandbox takes up to N invocations at once (joining one still being
// created), and a new sandbox is created only when every slot of every
// sandbox is busy.
func TestMultiSlotSandboxes(t *testing.T) {
	w := newWorld(t, worldConfig{})
	g := newSlotGate()
	w.invoke = g.invoke
	fn := multiSlotFunction("multi", 4)

	wait := invokeN(t, w.m, fn, 10, "a")
	polltest.Until(t, 10*time.Second, "10 invocations in sandboxes", func() bool { return w.inFlight.Load() == 10 })
	if n := len(w.sandboxes()); n != 3 {
		t.Fatalf("10 invocations with 4 slots per sandbox made %d sandboxes, want 3", n)
	}
	st := w.m.Stats()
	if st.Busy != 3 || st.Idle != 0 {
		t.Fatalf("stats = %+v, want 3 busy sandboxes", st)
	}
	g.release()
	per := map[string]int{}
	for _, id := range wait() {
		per[id]++
	}
	for id, n := range per {
		if n > 4 {
			t.Errorf("sandbox %s ran %d invocations, more than its 4 slots", id, n)
		}
	}
	if st := w.m.Stats(); st.Idle != 3 || st.Busy != 0 || st.ColdStarts != 3 {
		t.Fatalf("after: stats = %+v, want 3 idle, 3 cold starts", st)
	}

	// Warm: 8 at once fill two of the idle sandboxes, no new one.
	g2 := newSlotGate()
	w.invoke = g2.invoke
	wait = invokeN(t, w.m, fn, 8, "b")
	polltest.Until(t, 10*time.Second, "8 invocations in sandboxes", func() bool { return w.inFlight.Load() == 8 })
	if st := w.m.Stats(); st.Busy != 2 || st.Idle != 1 || st.ColdStarts != 3 {
		t.Fatalf("warm: stats = %+v, want 2 busy, 1 idle, no new cold start", st)
	}
	g2.release()
	wait()
}

// TestMultiSlotUnhealthy: a multi-slot sandbox found unhealthy takes no
// new invocation, lets its running ones end, then is destroyed once.
func TestMultiSlotUnhealthy(t *testing.T) {
	w := newWorld(t, worldConfig{})
	fn := multiSlotFunction("sick", 3)
	var mu sync.Mutex
	gates := map[string]*slotGate{}
	gateOf := func(id string) *slotGate {
		mu.Lock()
		defer mu.Unlock()
		if gates[id] == nil {
			gates[id] = newSlotGate()
		}
		return gates[id]
	}
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		return gateOf(req.RequestID).invoke(ctx, sb, req)
	}
	start := func(id string) func() []string { return invokeN(t, w.m, fn, 1, id) }

	a, b, c := start("a"), start("b"), start("c")
	polltest.Until(t, 10*time.Second, "3 invocations in the sandbox", func() bool { return w.inFlight.Load() == 3 })
	sb := w.sandboxes()[0]
	sb.healthy.Store(false) // say its runtime crashed
	gateOf("a-0").release()
	a()
	d := start("d")
	polltest.Until(t, 10*time.Second, "the 4th invocation running", func() bool { return w.inFlight.Load() == 3 })
	if ids := w.sandboxes(); len(ids) != 2 {
		t.Fatalf("after the sandbox turned unhealthy %d sandboxes exist, want a new one", len(ids))
	}
	if sb.destroyed.Load() != 0 {
		t.Fatal("the unhealthy sandbox was destroyed while invocations ran in it")
	}
	gateOf("b-0").release()
	gateOf("c-0").release()
	b()
	c()
	polltest.Until(t, 10*time.Second, "the unhealthy sandbox destroyed", func() bool { return sb.destroyed.Load() == 1 })
	gateOf("d-0").release()
	if got := d()[0]; got == sb.id {
		t.Fatalf("the 4th invocation ran in the unhealthy sandbox %s", got)
	}
}
