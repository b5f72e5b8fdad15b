package worker

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/runtimes"
	"github.com/flintdev/flint/internal/sandbox/process"
)

// BenchmarkWarmInvoke times sequential warm invocations of one process
// sandbox (testdata/gofn, "echo"): the worker's own per-invocation cost
// (Runtime API round trip, output, REPORT with its cgroup stats, log
// append) plus the function's.
func BenchmarkWarmInvoke(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("process driver needs root (namespaces, cgroups, mounts)")
	}
	drv, err := process.New(process.Config{StateDir: b.TempDir(), CgroupParent: testCgroupParent, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Skipf("process driver unavailable on this host: %v", err)
	}
	data := b.TempDir()
	for d := data; d != "/" && d != os.TempDir() && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	code := filepath.Join(data, "code")
	gobuildtest.Build(b, "./testdata/gofn", filepath.Join(code, "bootstrap"))
	if err := os.Chmod(code, 0o755); err != nil {
		b.Fatal(err)
	}
	cat, err := runtimes.New(runtimes.Config{AssetDir: filepath.Join(data, "runtimes")})
	if err != nil {
		b.Fatal(err)
	}
	src := &dirCode{}
	src.add("bbb000", code)
	w, err := New(Config{
		HostID: "host-1", DataDir: filepath.Join(data, "worker"), Driver: drv, Code: src, Logs: &memLogs{}, Runtimes: cat,
		MemoryMB: 4096, MaxSandboxes: 8, InitTimeout: 10 * time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.Close(ctx); err != nil {
			b.Errorf("close worker: %v", err)
		}
	}()
	fn := function("bench", "provided", "bootstrap", "bbb000")
	fn.MemorySize = 1769 // one full CPU, as flint bench's warm scenario
	s, err := w.CreateSandbox(context.Background(), fn)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	payload := []byte(`{"action":"echo"}`)
	if _, err := s.Invoke(ctx, invocation.Request{RequestID: "warm-up", Payload: payload}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		res, err := s.Invoke(ctx, invocation.Request{RequestID: "r-" + strconv.Itoa(i), Payload: payload})
		if err != nil || res.FunctionError != "" {
			b.Fatalf("invoke %d: %v %s", i, err, res.Payload)
		}
	}
}
