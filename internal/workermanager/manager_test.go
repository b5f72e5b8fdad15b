package workermanager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/polltest"
)

func invoke(t *testing.T, w *world, fn *metadata.Function, id string) invocation.Result {
	t.Helper()
	res, err := w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: id, Payload: []byte(`"` + id + `"`)})
	if err != nil {
		t.Fatalf("invoke %s: %v", id, err)
	}
	if res.RequestID != id {
		t.Fatalf("invoke %s: got result %+v", id, res)
	}
	return res
}

// gate blocks fake invocations until opened and counts who is waiting.
type gate struct {
	entered chan string // sandbox ids, one per invocation that reached the gate
	open    chan struct{}
	once    sync.Once
}

func newGate(n int) *gate {
	return &gate{entered: make(chan string, n), open: make(chan struct{})}
}

func (g *gate) wait(sb *fakeSandbox) {
	g.entered <- sb.id
	<-g.open
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// await returns the ids of the next n invocations to reach the gate.
func (g *gate) await(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case id := <-g.entered:
			ids = append(ids, id)
		case <-timeout:
			t.Fatalf("only %d of %d invocations reached their sandbox", len(ids), n)
		}
	}
	return ids
}

// holdInvocations makes every invocation whose request id starts with
// "held" wait at a gate (others return at once), starts n invocations
// "held-0".."held-<n-1>" of fn in the background (each failing t on an
// error) and returns once all n are in their sandboxes. The caller
// releases the gate and then waits on the group.
func holdInvocations(t *testing.T, w *world, fn *metadata.Function, n int) (*gate, *sync.WaitGroup) {
	t.Helper()
	g := newGate(n)
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		if strings.HasPrefix(req.RequestID, "held") {
			g.wait(sb)
		}
		return invocation.Result{RequestID: req.RequestID}, nil
	}
	wg := &sync.WaitGroup{}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: fmt.Sprintf("held-%d", i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	g.await(t, n)
	return g, wg
}

func TestWarmReuse(t *testing.T) {
	w := newWorld(t, worldConfig{})
	fn := testFunction("warm")

	first := invoke(t, w, fn, "r1")
	if !first.ColdStart || first.SandboxID == "" || string(first.Payload) != `"r1"` {
		t.Fatalf("first invocation: %+v, want a cold start", first)
	}
	for i := 2; i <= 4; i++ {
		res := invoke(t, w, fn, fmt.Sprintf("r%d", i))
		if res.ColdStart || res.SandboxID != first.SandboxID {
			t.Fatalf("invocation %d: cold=%v sandbox=%s, want warm %s", i, res.ColdStart, res.SandboxID, first.SandboxID)
		}
	}
	st := w.m.Stats()
	if st.ColdStarts != 1 || st.Invocations != 4 || st.Idle != 1 || st.Busy != 0 || st.Pools[fn.SandboxKey()].Idle != 1 {
		t.Fatalf("stats %+v", st)
	}
	if got := w.reservedMB(); got != 128 {
		t.Fatalf("placement holds %d MB, want 128 for the one idle sandbox", got)
	}

	// Another revision of the same function never shares the sandbox.
	fn2 := *fn
	fn2.RevisionID = "rev-2"
	if res := invoke(t, w, &fn2, "r5"); !res.ColdStart || res.SandboxID == first.SandboxID {
		t.Fatalf("new revision reused sandbox: %+v", res)
	}
}

func TestMostRecentlyUsedIdleFirst(t *testing.T) {
	w := newWorld(t, worldConfig{})
	fn := testFunction("mru")
	gates := map[string]*gate{"a": newGate(1), "b": newGate(1)}
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		if g := gates[req.RequestID]; g != nil {
			g.wait(sb)
		}
		return invocation.Result{RequestID: req.RequestID}, nil
	}
	results := make(chan invocation.Result, 2)
	for id := range gates {
		go func() {
			res, err := w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: id})
			if err != nil {
				t.Error(err)
			}
			results <- res
		}()
	}
	gates["a"].await(t, 1)
	gates["b"].await(t, 1)
	// a's sandbox becomes idle first, then b's: b's is the most recent.
	gates["a"].release()
	<-results
	polltest.Until(t, 10*time.Second, "a's sandbox to be idle", func() bool { return w.m.Stats().Idle == 1 })
	gates["b"].release()
	resB := <-results
	polltest.Until(t, 10*time.Second, "b's sandbox to be idle", func() bool { return w.m.Stats().Idle == 2 })
	if res := invoke(t, w, fn, "c"); res.SandboxID != resB.SandboxID {
		t.Fatalf("claimed %s, want the most recently used %s", res.SandboxID, resB.SandboxID)
	}
}

func TestConcurrentInvocationsGetSeparateSandboxes(t *testing.T) {
	w := newWorld(t, worldConfig{})
	fn := testFunction("parallel")
	const n = 6
	g := newGate(n)
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		if strings.HasPrefix(req.RequestID, "held") {
			g.wait(sb)
		}
		return invocation.Result{RequestID: req.RequestID, Payload: req.Payload}, nil
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: fmt.Sprintf("held-%d", i)})
			if err != nil || !res.ColdStart {
				t.Errorf("held-%d: %+v, %v (want a cold start)", i, res, err)
			}
		}()
	}
	ids := g.await(t, n)
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("two concurrent invocations in sandbox %s", id)
		}
		seen[id] = true
	}
	if st := w.m.Stats(); st.Busy != n || st.Idle != 0 {
		t.Fatalf("stats with %d held: %+v", n, st)
	}
	g.release()
	wg.Wait()

	// A free-for-all of short invocations: never two in one sandbox (the
	// fakes record it), and no more sandboxes than concurrent callers.
	const workers, each = 8, 40
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				id := fmt.Sprintf("free-%d-%d", i, j)
				if _, err := w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: id}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := w.m.Stats()
	if total := st.Idle + st.Busy; total > max(workers, n) || total < n {
		t.Fatalf("%d sandboxes after %d concurrent callers: %+v", total, workers, st)
	}
	if st.Invocations != n+workers*each {
		t.Fatalf("invocations %d, want %d", st.Invocations, n+workers*each)
	}
	if got := w.maxFlight.Load(); got < 2 {
		t.Fatalf("max concurrency %d: the test did not run invocations in parallel", got)
	}
}

func TestUnhealthySandboxDestroyedAndReplaced(t *testing.T) {
	w := newWorld(t, worldConfig{})
	fn := testFunction("crashy")
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		switch req.RequestID {
		case "timeout":
			sb.healthy.Store(false)
			return invocation.Result{RequestID: req.RequestID, FunctionError: invocation.ErrorUnhandled, ErrorType: "Sandbox.Timedout"}, nil
		case "broken":
			return invocation.Result{}, errors.New("runtime api connection lost")
		}
		return invocation.Result{RequestID: req.RequestID, Payload: req.Payload}, nil
	}
	first := invoke(t, w, fn, "ok")
	res, err := w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: "timeout"})
	if err != nil || res.FunctionError != invocation.ErrorUnhandled || res.SandboxID != first.SandboxID {
		t.Fatalf("timed-out invocation: %+v, %v", res, err)
	}
	if sb := w.sandbox(first.SandboxID); sb.destroyed.Load() != 1 {
		t.Fatalf("unhealthy sandbox destroyed %d times, want 1", sb.destroyed.Load())
	}
	if w.reservedMB() != 0 || w.place.outstanding() != 0 {
		t.Fatalf("reservation of the unhealthy sandbox not released: %d MB", w.reservedMB())
	}
	second := invoke(t, w, fn, "ok2")
	if !second.ColdStart || second.SandboxID == first.SandboxID {
		t.Fatalf("after the crash: %+v, want a new sandbox", second)
	}

	// An infrastructure error from Invoke is an error, and the sandbox goes.
	_, err = w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: "broken"})
	if err == nil || !strings.Contains(err.Error(), fn.Name) || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("broken invocation: err = %v", err)
	}
	if sb := w.sandbox(second.SandboxID); sb.destroyed.Load() != 1 {
		t.Fatal("sandbox kept after an Invoke error")
	}
	if st := w.m.Stats(); st.Idle != 0 || st.Destroyed != 2 || len(st.Pools) != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPlacementExhaustion(t *testing.T) {
	// 256 MB in total: two 128 MB sandboxes.
	w := newWorld(t, worldConfig{hostMemoryMB: []int{256}})
	fn := testFunction("popular")
	g, wg := holdInvocations(t, w, fn, 2)

	for i := range 3 {
		_, err := w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: fmt.Sprintf("extra-%d", i)})
		if !lambdaerr.Is(err, lambdaerr.TooManyRequests) {
			t.Fatalf("third concurrent invocation: err = %v, want TooManyRequests", err)
		}
		if !strings.Contains(err.Error(), fn.Name) {
			t.Fatalf("error %q does not name the function", err)
		}
	}
	if st := w.m.Stats(); st.Busy != 2 || st.Creating != 0 {
		t.Fatalf("stats after rejections: %+v", st)
	}
	w.place.mu.Lock()
	nReleased := len(w.place.released)
	w.place.mu.Unlock()
	if nReleased != 0 {
		t.Fatalf("%d reservations released while both sandboxes are busy", nReleased)
	}

	g.release()
	wg.Wait()
	if res := invoke(t, w, fn, "after"); res.ColdStart {
		t.Fatal("cold start although two sandboxes are idle")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if w.place.outstanding() != 0 || w.reservedMB() != 0 {
		t.Fatal("reservations left after Close")
	}
	// checkClean (at cleanup) fails on any reservation released twice.
}

func TestCreationFailureReleases(t *testing.T) {
	w := newWorld(t, worldConfig{})
	fn := testFunction("broken")
	boom := errors.New("code download failed")
	w.hosts["host-0"].create = func(ctx context.Context) error { return boom }

	_, err := w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: "r"})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), fn.Name) {
		t.Fatalf("err = %v, want the creation error naming %s", err, fn.Name)
	}
	if w.place.places != 1 || w.place.outstanding() != 0 || w.reservedMB() != 0 {
		t.Fatalf("reservation not released after failed creation (places %d)", w.place.places)
	}
	if st := w.m.Stats(); len(st.Pools) != 0 || st.ColdStarts != 0 {
		t.Fatalf("stats after failed creation: %+v", st)
	}

	// A host that placement knows but the manager cannot reach.
	delete(w.hosts, "host-0")
	_, err = w.m.Invoke(context.Background(), fn, invocation.Request{RequestID: "r2"})
	if err == nil || !strings.Contains(err.Error(), "unknown host") {
		t.Fatalf("err = %v, want unknown host", err)
	}
	if w.place.outstanding() != 0 || w.reservedMB() != 0 {
		t.Fatal("reservation not released for an unknown host")
	}
}

func TestCallerHangsUp(t *testing.T) {
	w := newWorld(t, worldConfig{})
	fn := testFunction("slow")
	g := newGate(1)
	var sawCanceled atomic.Bool
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		if req.RequestID == "slow" {
			g.wait(sb)
			sawCanceled.Store(ctx.Err() != nil)
		}
		return invocation.Result{RequestID: req.RequestID}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := w.m.Invoke(ctx, fn, invocation.Request{RequestID: "slow"})
		errc <- err
	}()
	sbID := g.await(t, 1)[0]
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("hung-up invocation: err = %v, want context.Canceled", err)
	}
	if st := w.m.Stats(); st.Busy != 1 {
		t.Fatalf("sandbox not busy while its invocation runs on: %+v", st)
	}
	g.release()
	polltest.Until(t, 10*time.Second, "the sandbox to return to idle", func() bool { return w.m.Stats().Idle == 1 })
	if sawCanceled.Load() {
		t.Fatal("the sandbox's invocation saw the caller's cancellation")
	}
	if w.sandbox(sbID).destroyed.Load() != 0 {
		t.Fatal("sandbox destroyed because the caller hung up")
	}
	if res := invoke(t, w, fn, "next"); res.ColdStart || res.SandboxID != sbID {
		t.Fatalf("next invocation: %+v, want warm %s", res, sbID)
	}
}

func TestConfigValidate(t *testing.T) {
	w := newWorld(t, worldConfig{})
	hosts := func(string) (Host, bool) { return nil, false }
	for _, cfg := range []Config{
		{Hosts: hosts},
		{Placement: w.place},
		{Placement: w.place, Hosts: hosts, KeepAlive: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

// BenchmarkWarmInvoke measures the manager's own overhead per warm
// invocation (claim, invoke a no-op fake, return to idle).
func BenchmarkWarmInvoke(b *testing.B) {
	w := newWorld(b, worldConfig{})
	fn := testFunction("bench")
	req := invocation.Request{RequestID: "r"}
	for b.Loop() {
		if _, err := w.m.Invoke(context.Background(), fn, req); err != nil {
			b.Fatal(err)
		}
	}
	if st := w.m.Stats(); st.ColdStarts != 1 {
		b.Fatalf("%d cold starts, want 1", st.ColdStarts)
	}
}
