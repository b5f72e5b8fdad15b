package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/sandbox/process"
)

func TestMain(m *testing.M) {
	// The in-process server's sandbox driver re-executes this binary as
	// the sandbox init.
	process.MaybeRunInit()
	os.Exit(m.Run())
}

// fixedFields are the JSON paths tools read; each must be a positive
// number after a run.
var (
	fixedCommon = []string{"warm.seq_p50_ms", "warm.seq_p99_ms", "warm.c1_rps", "warm.c4_rps", "warm.c16_rps", "cold.p50_ms", "cold.p99_ms"}
	fixedFlint  = []string{"density.idle_overhead_mib", "density.creates_per_s", "async.accept_rps", "async.start_p50_ms"}
)

// TestQuickRun runs `flint bench --quick --peer rie` for real: an
// in-process Flint server with real sandboxes and the emulator, and checks
// that the JSON report has every fixed field with a positive value. The
// numbers themselves are not asserted.
func TestQuickRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the in-process Flint server creates sandboxes (namespaces, cgroups)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go tool: the bench builds its function and installs the emulator")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1) for the emulator's concurrent mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var logs bytes.Buffer
	cfg := Config{
		ServerBinary: buildFlint(t),
		Quick:        true,
		Peer:         "rie",
		CacheDir:     cacheDir(t),
		Logger:       slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Progress:     testWriter{t},
		DensityN:     20, // enough that the memory delta stands out of other processes' noise
		ColdN:        3,
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("bench: %v\nserver log:\n%s", err, logs.String())
	}
	var table bytes.Buffer
	rep.PrintTable(&table)
	t.Logf("\n%s", table.String())
	path := filepath.Join(t.TempDir(), "bench.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if s, _ := doc["date"].(string); s == "" {
		t.Errorf("no date in %s", b)
	}
	if _, ok := doc["host"].(map[string]any); !ok {
		t.Errorf("no host object in %s", b)
	}
	for target, fields := range map[string][]string{"flint": append(fixedCommon, fixedFlint...), "rie": fixedCommon} {
		for _, f := range fields {
			v, ok := lookup(doc, target+"."+f)
			if !ok {
				t.Errorf("%s.%s missing", target, f)
				continue
			}
			if n, _ := v.(float64); n <= 0 {
				t.Errorf("%s.%s = %v, want a positive number", target, f, v)
			}
		}
	}
	// The server was the default one, started as flint server, and the
	// report says how it was configured.
	for _, f := range []string{"server.how", "server.driver", "server.sandbox_init", "server.auth", "server.version"} {
		if v, _ := lookup(doc, f); v == "" || v == nil {
			t.Errorf("%s empty", f)
		}
	}
	if v, _ := lookup(doc, "server.how"); v != "child process" {
		t.Errorf("server.how = %v, want the child process", v)
	}
	if v, _ := lookup(doc, "server.gomaxprocs"); v == nil || v.(float64) <= 0 {
		t.Errorf("server.gomaxprocs = %v", v)
	}
	if v, _ := lookup(doc, "server.signed_client"); v != false {
		t.Errorf("server.signed_client = %v, want a plain client on a dev server", v)
	}
	// Both emulator modes measured, the better per row reported.
	for _, mode := range []string{rieDefault, rieConcurrent} {
		if v, _ := lookup(doc, "rie.warm_modes."+mode+".seq_p50_ms"); v == nil || v.(float64) <= 0 {
			t.Errorf("rie.warm_modes.%s.seq_p50_ms = %v", mode, v)
		}
	}
	// The floor: the minimal emulator, sequential.
	if v, _ := lookup(doc, "rie.floor.seq_p50_ms"); v == nil || v.(float64) <= 0 {
		t.Errorf("rie.floor.seq_p50_ms = %v", v)
	}
	// Multi-concurrency: measured, or said why not.
	if rep.Flint.WarmMulti != nil {
		if rep.Flint.WarmMulti.C16RPS <= 0 {
			t.Errorf("multi-concurrency c16 = %v", rep.Flint.WarmMulti.C16RPS)
		}
	} else if !strings.HasPrefix(rep.Flint.MultiConcurrency, "multi-concurrency: not supported by this server") {
		t.Errorf("no multi-concurrency rows and no reason: %q", rep.Flint.MultiConcurrency)
	}
	if a := rep.Flint.Async; a == nil || len(a.Phases) != 2 || a.Phases[0].Clients != 64 || a.Phases[1].Clients != 16 {
		t.Errorf("async accept phases: %+v", a)
	}
	if c := rep.Flint.Cold; c == nil || c.BreakdownStat != "mean" || c.Breakdown["sandbox create"] <= 0 {
		t.Errorf("cold breakdown from the server's metrics missing: %+v", c)
	}
	if t.Failed() {
		t.Logf("report:\n%s\nserver log:\n%s", b, logs.String())
	}
}

// buildFlint builds cmd/flint, the binary the bench starts as the
// server (the test binary has no server command).
func buildFlint(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "flint")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/flintdev/flint/cmd/flint")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build flint: %v\n%s", err, out)
	}
	return bin
}

// cacheDir keeps the bench function and the emulator across test runs
// (building and installing them takes longer than the run itself).
func cacheDir(t *testing.T) string {
	if d := os.Getenv("FLINT_BENCH_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "flint-bench-cache")
}

func lookup(doc map[string]any, path string) (any, bool) {
	var cur any = doc
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct{ p, want float64 }{{50, 50}, {90, 90}, {99, 99}, {100, 100}, {0, 1}} {
		if got := percentile(ds, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
}

// TestCaptureHandler checks that the creation records of the worker
// manager and the driver are joined by sandbox id, only while capturing,
// and that records below the forward level are not forwarded.
func TestCaptureHandler(t *testing.T) {
	var out bytes.Buffer
	h := newCaptureHandler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}), slog.LevelWarn)
	log := slog.New(h)
	drv := log.With("component", "sandbox")
	mgr := log.With("component", "workermanager")
	drv.Debug("sandbox created", "sandbox", "a", "start", time.Millisecond, "init/proc", time.Microsecond)
	mgr.Info("sandbox created", "sandbox", "a", "took", 3*time.Millisecond)
	if got := h.take(); len(got) != 0 {
		t.Fatalf("captured %d creations while off", len(got))
	}
	if h.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("debug enabled while not capturing")
	}
	h.setCapturing(true)
	drv.Debug("sandbox created", "sandbox", "b", "start", time.Millisecond, "init/proc", time.Microsecond)
	mgr.Info("sandbox created", "sandbox", "b", "host", "h", "took", 3*time.Millisecond)
	mgr.Warn("something else", "sandbox", "b")
	got := h.take()
	if len(got) != 1 || got[0].took != 3*time.Millisecond || len(got[0].steps) != 2 || got[0].steps[0].name != "start" {
		t.Fatalf("captured %+v", got)
	}
	if len(h.take()) != 0 {
		t.Fatal("take did not forget")
	}
	if s := out.String(); strings.Contains(s, "sandbox created") || !strings.Contains(s, "something else") {
		t.Fatalf("forwarded:\n%s", s)
	}
}
