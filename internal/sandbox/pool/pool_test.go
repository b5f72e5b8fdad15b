package pool_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/clock/clocktest"
	"github.com/flintdev/flint/internal/polltest"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/pool"
	"github.com/flintdev/flint/internal/sandbox/process"
	"github.com/flintdev/flint/internal/sandbox/process/cgroup"
)

var testParent = "flint-pooltest-" + strconv.Itoa(os.Getpid())

func TestMain(m *testing.M) {
	process.MaybeRunInit()
	code := m.Run()
	cgroup.RemoveParent(process.DefaultCgroupRoot, testParent)
	os.Exit(code)
}

// newDriver builds a real process driver or skips saying why.
func newDriver(t *testing.T) *process.Driver {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("pool tests use real process sandboxes: they need root (namespaces, cgroups, mounts)")
	}
	d, err := process.New(process.Config{StateDir: t.TempDir(), CgroupParent: testParent, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Skipf("process sandbox driver unavailable on this host: %v", err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	return d
}

func newPool(t *testing.T, cfg pool.Config) *pool.Pool {
	t.Helper()
	if cfg.Driver == nil {
		cfg.Driver = newDriver(t)
	}
	p, err := pool.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func spec(t *testing.T, id string) sandbox.Spec {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return sandbox.Spec{
		ID: id, CodeDir: dir, Command: []string{"/bin/sleep", "600"},
		Env: []string{"PATH=/usr/bin:/bin"}, RuntimeAPI: http.NotFoundHandler(), Output: io.Discard,
		MemoryMB: 256,
	}
}

// poolCgroups lists the cgroups of prepared, unclaimed sandboxes.
func poolCgroups(t *testing.T) []string {
	t.Helper()
	var ids []string
	for _, dir := range []string{filepath.Join(process.DefaultCgroupRoot, "pids", testParent), filepath.Join(process.DefaultCgroupRoot, testParent)} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), "pool-") {
				ids = append(ids, e.Name())
			}
		}
	}
	return ids
}

func create(t *testing.T, p *pool.Pool, id string) *process.Sandbox {
	t.Helper()
	sb, err := p.Create(context.Background(), spec(t, id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Destroy(context.Background()) })
	return sb.(*process.Sandbox)
}

func claimed(sb *process.Sandbox) bool {
	return slices.ContainsFunc(sb.Timings(), func(s sandbox.Step) bool { return s.Name == "claim-cgroup" })
}

const wait = 60 * time.Second

// TestClaimAndRefill: a started pool prepares a sandbox; a Create claims
// it (a fresh sandbox of its own, named and limited as the spec says),
// and the pool prepares the next.
func TestClaimAndRefill(t *testing.T) {
	p := newPool(t, pool.Config{MaxSize: 2})
	polltest.Until(t, wait, "the pool to prepare a sandbox", func() bool { return p.Stats().Ready >= 1 })
	a := create(t, p, "claim-a-"+strconv.Itoa(os.Getpid()))
	if !claimed(a) {
		t.Errorf("Create with a prepared sandbox ready did not claim it: steps %v", a.Timings())
	}
	if st := p.Stats(); st.Claims != 1 {
		t.Errorf("Stats after one claim: %+v", st)
	}
	polltest.Until(t, wait, "the pool to refill", func() bool { st := p.Stats(); return st.Ready >= 1 && st.Prepared >= 2 })
	b := create(t, p, "claim-b-"+strconv.Itoa(os.Getpid()))
	if !claimed(b) || a.Pid() == b.Pid() {
		t.Errorf("second Create: claimed %v, pid %d (first %d)", claimed(b), b.Pid(), a.Pid())
	}
	for _, sb := range []*process.Sandbox{a, b} {
		select {
		case <-sb.Done():
			t.Errorf("sandbox %s exited: %v", sb.ID(), sb.Err())
		default:
		}
	}
}

// TestTargetFollowsRateAndBudget: the target grows with the cold-start
// rate, is capped by MaxSize and by the memory budget, shrinks as the rate
// decays and is zero once idle; the pool follows it.
func TestTargetFollowsRateAndBudget(t *testing.T) {
	clk := clocktest.New(time.Unix(1e9, 0))
	d := newDriver(t)
	p := newPool(t, pool.Config{Driver: d, MaxSize: 3, Lead: 2 * time.Second, RateWindow: 10 * time.Second, IdleAfter: time.Hour, Clock: clk})
	polltest.Until(t, wait, "the pool to prepare its first sandbox", func() bool { return p.Stats().Ready == 1 })
	if st := p.Stats(); st.Target != 1 {
		t.Fatalf("target with no cold start yet: %+v, want 1", st)
	}
	// 10 cold starts at once: rate 10/10s, target ceil(1/s × 2s) = 2.
	for i := range 10 {
		create(t, p, "rate-"+strconv.Itoa(i)+"-"+strconv.Itoa(os.Getpid()))
	}
	if st := p.Stats(); st.Target != 2 || st.Claims+st.Misses != 10 {
		t.Fatalf("after 10 cold starts: %+v, want target 2", st)
	}
	// Their runtimes never call the Runtime API: each cold start holds
	// the refill back for StartGrace.
	clk.Advance(pool.DefaultStartGrace)
	polltest.Until(t, wait, "the pool to reach its target", func() bool { return p.Stats().Ready == 2 })
	// Ten more: the target hits MaxSize.
	for i := range 10 {
		create(t, p, "rate2-"+strconv.Itoa(i)+"-"+strconv.Itoa(os.Getpid()))
	}
	if st := p.Stats(); st.Target != 3 {
		t.Fatalf("after 20 cold starts: %+v, want MaxSize 3", st)
	}
	clk.Advance(pool.DefaultStartGrace)
	polltest.Until(t, wait, "the pool to reach MaxSize", func() bool { return p.Stats().Ready == 3 })
	// (Claimed sandboxes' cgroups lose their pool name in the background.)
	polltest.Until(t, wait, "3 prepared sandboxes' cgroups on the host", func() bool { return len(poolCgroups(t)) == 3 })
	// A minute without cold starts: the rate decays, one is kept.
	clk.Advance(time.Minute)
	polltest.Until(t, wait, "the pool to shrink", func() bool { st := p.Stats(); return st.Target == 1 && st.Ready == 1 })
	polltest.Until(t, wait, "the extra sandboxes' cgroups to go", func() bool { return len(poolCgroups(t)) == 1 })
	// Idle for IdleAfter: nothing kept.
	clk.Advance(time.Hour)
	polltest.Until(t, wait, "the pool to empty", func() bool { st := p.Stats(); return st.Target == 0 && st.Ready == 0 })
	polltest.Until(t, wait, "the last prepared sandbox's cgroups to go", func() bool { return len(poolCgroups(t)) == 0 })

	// The budget caps the target at what fits at the measured size.
	each := p.Stats().MemoryEach
	q := newPool(t, pool.Config{Driver: d, MaxSize: 8, MemoryBudget: 2*each + each/2, Clock: clk})
	for i := range 40 {
		create(t, q, "budget-"+strconv.Itoa(i)+"-"+strconv.Itoa(os.Getpid()))
	}
	if st := q.Stats(); st.Target > 2 {
		t.Errorf("target %d beyond the budget (%d bytes, %d each)", st.Target, 2*each+each/2, st.MemoryEach)
	}
	// Nothing fits: nothing is prepared.
	r := newPool(t, pool.Config{Driver: d, MemoryBudget: 1, Clock: clk})
	create(t, r, "nobudget-"+strconv.Itoa(os.Getpid()))
	if st := r.Stats(); st.Target != 0 || st.Claims != 0 {
		t.Errorf("pool with no budget: %+v", st)
	}
}

// TestCloseDestroysPrepared: Close destroys every prepared sandbox and its
// init; claimed sandboxes stay their owners'.
func TestCloseDestroysPrepared(t *testing.T) {
	d := newDriver(t)
	p, err := pool.New(pool.Config{Driver: d, MaxSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, wait, "the pool to prepare a sandbox", func() bool { return p.Stats().Ready >= 1 })
	sb := create(t, p, "kept-"+strconv.Itoa(os.Getpid()))
	polltest.Until(t, wait, "the pool to refill", func() bool { return p.Stats().Ready >= 1 })
	if len(poolCgroups(t)) == 0 {
		t.Fatal("no prepared sandbox's cgroup on the host")
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ids := poolCgroups(t); len(ids) != 0 {
		t.Errorf("prepared sandboxes' cgroups left after Close: %v", ids)
	}
	select {
	case <-sb.Done():
		t.Errorf("Close ended a claimed sandbox: %v", sb.Err())
	default:
	}
	after := create(t, p, "afterclose-"+strconv.Itoa(os.Getpid()))
	if claimed(after) {
		t.Error("Create after Close claimed a prepared sandbox")
	}
}

// TestRefillWaitsForColdStarts: after a claim the pool prepares the next
// sandbox at once only when it is empty; while it still holds one, it
// waits until the claimed sandbox's runtime has served its first
// invocation (two Runtime API requests), or StartGrace when it never gets
// that far.
func TestRefillWaitsForColdStarts(t *testing.T) {
	if _, err := os.Stat("/bin/bash"); err != nil {
		t.Skip("the test runtime is a bash script: no /bin/bash")
	}
	clk := clocktest.New(time.Unix(1e9, 0))
	// Lead 20 s: one cold start (0.1/s) makes the target 2.
	p := newPool(t, pool.Config{MaxSize: 2, Lead: 20 * time.Second, IdleAfter: time.Hour, Clock: clk})
	polltest.Until(t, wait, "the pool to prepare a sandbox", func() bool { return p.Stats().Ready == 1 })

	// A runtime that never calls the Runtime API: the empty pool refills
	// at once, then waits for StartGrace.
	silent := create(t, p, "silent-"+strconv.Itoa(os.Getpid()))
	if !claimed(silent) {
		t.Fatalf("Create did not claim the prepared sandbox: %v", silent.Timings())
	}
	polltest.Until(t, wait, "the empty pool to refill during the cold start", func() bool {
		st := p.Stats()
		return st.Target == 2 && st.Prepared == 2 && st.Ready == 1
	})
	time.Sleep(300 * time.Millisecond) // the refill had time to go on, were it free to
	if st := p.Stats(); st.Prepared != 2 {
		t.Fatalf("the pool prepared a second sandbox during a cold start: %+v", st)
	}
	clk.Advance(pool.DefaultStartGrace)
	polltest.Until(t, wait, "the pool to refill after StartGrace", func() bool { return p.Stats().Ready == 2 })

	// A runtime that asks for its first invocation and answers it: the
	// refill starts at the answer, with no StartGrace passing.
	reqs := make(chan string, 4)
	sp := spec(t, "talker-"+strconv.Itoa(os.Getpid()))
	sp.Command = []string{"/bin/bash", "-c", `for p in next response; do
		exec 3<>/dev/tcp/127.0.0.1/${AWS_LAMBDA_RUNTIME_API##*:}
		printf 'GET /%s HTTP/1.0\r\n\r\n' $p >&3
		cat <&3 >/dev/null
		exec 3<&-
	done
	exec sleep 600`}
	sp.RuntimeAPI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs <- r.URL.Path
		w.Write([]byte("ok"))
	})
	sb, err := p.Create(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Destroy(context.Background()) })
	for _, want := range []string{"/next", "/response"} {
		select {
		case got := <-reqs:
			if got != want {
				t.Fatalf("Runtime API request %s, want %s", got, want)
			}
		case <-sb.Done():
			t.Fatalf("test runtime exited: %v", sb.Err())
		case <-time.After(wait):
			t.Fatalf("no Runtime API request %s", want)
		}
	}
	polltest.Until(t, wait, "the pool to refill after the first invocation", func() bool {
		st := p.Stats()
		return st.Ready == 2 && st.Prepared == 4
	})
}
