package server

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/metrics"
	"github.com/flintdev/flint/internal/placement"
	"github.com/flintdev/flint/internal/records"
	"github.com/flintdev/flint/internal/workermanager"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// instantHost creates sandboxes that answer at once: the benchmark
// measures the platform's own path, not a runtime.
type instantHost struct{}

func (instantHost) CreateSandbox(ctx context.Context, fn *metadata.Function) (workermanager.Sandbox, error) {
	return &instantSandbox{}, nil
}

type instantSandbox struct{ n atomic.Int64 }

func (s *instantSandbox) ID() string { return "sb" }
func (s *instantSandbox) Invoke(ctx context.Context, req invocation.Request) (invocation.Result, error) {
	cold := s.n.Add(1) == 1
	res := invocation.Result{RequestID: req.RequestID, Payload: []byte(`"ok"`), ExecutedVersion: "$LATEST",
		Duration: 300 * time.Microsecond, MemoryUsedBytes: 20 << 20}
	if cold {
		res.ColdStart, res.InitDuration = true, 5*time.Millisecond
		res.Cold = &invocation.ColdSteps{SandboxCreate: 4 * time.Millisecond, RuntimeInit: time.Millisecond}
	}
	return res, nil
}
func (s *instantSandbox) Healthy() bool                     { return true }
func (s *instantSandbox) Destroy(ctx context.Context) error { return nil }

// discardSink counts records instead of storing them.
type discardSink struct{ n atomic.Int64 }

func (d *discardSink) AppendRecord(ctx context.Context, account, function, requestID string, data []byte) error {
	d.n.Add(1)
	return nil
}

func newBenchManager(tb testing.TB) *workermanager.Manager {
	tb.Helper()
	log := slog.New(slog.DiscardHandler)
	pl, err := placement.New(placement.Config{Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	if err := pl.Heartbeat(placement.HostStatus{HostID: "h", MemoryMB: 1 << 20}); err != nil {
		tb.Fatal(err)
	}
	m, err := workermanager.New(workermanager.Config{
		Placement: pl,
		Hosts:     func(string) (workermanager.Host, bool) { return instantHost{}, true },
		Logger:    log,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close(context.Background()) })
	return m
}

type invoker interface {
	Invoke(ctx context.Context, fn *metadata.Function, req invocation.Request) (invocation.Result, error)
}

// BenchmarkWarmInvoke measures the warm invoke path through the real
// Worker Manager (the sandbox answers at once), without observation, with
// the metrics, and with the metrics and the invocation record: the
// difference between the sub-benchmarks is what observability costs each
// invocation.
func BenchmarkWarmInvoke(b *testing.B) {
	fn := &metadata.Function{Account: "000000000000", Name: "bench", Version: "$LATEST", Runtime: "provided.al2023",
		MemorySize: 128, Timeout: 3, CodeDigest: "abc"}
	req := invocation.Request{RequestID: "8c1c3e6e-6b0f-4b2c-9f39-1f0c1b2a3d4e", Payload: []byte(`{}`)}
	for _, mode := range []string{"plain", "metrics", "metrics+record"} {
		b.Run(mode, func(b *testing.B) {
			mgr := newBenchManager(b)
			var inv invoker = mgr
			if mode != "plain" {
				m, err := metrics.New(metrics.Config{})
				if err != nil {
					b.Fatal(err)
				}
				o := &observedManager{Manager: mgr, metrics: m}
				if mode == "metrics+record" {
					o.records = records.NewWriter(&discardSink{}, nil)
				}
				inv = o
			}
			ctx := context.Background()
			if _, err := inv.Invoke(ctx, fn, req); err != nil { // the cold start
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := inv.Invoke(ctx, fn, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestObservedManagerCounts checks that the decorator counts what the
// manager did and records every invocation that ran.
func TestObservedManagerCounts(t *testing.T) {
	mgr := newBenchManager(t)
	m, err := metrics.New(metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sink := &discardSink{}
	o := &observedManager{Manager: mgr, metrics: m, records: records.NewWriter(sink, nil)}
	fn := &metadata.Function{Account: "000000000000", Name: "f", Version: "$LATEST", Runtime: "provided.al2023",
		MemorySize: 128, Timeout: 3, CodeDigest: "abc"}
	for i := 0; i < 4; i++ {
		if _, err := o.Invoke(context.Background(), fn, invocation.Request{RequestID: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	mgr.SetReservedConcurrency(fn.Account, fn.Name, 0)
	if _, err := o.Invoke(context.Background(), fn, invocation.Request{RequestID: "t"}); err == nil {
		t.Fatal("invocation with reserved concurrency 0 ran")
	}
	const want = `
# HELP flint_invocations_total Invocations by function, version and outcome (success, function_error, timeout, throttle, error).
# TYPE flint_invocations_total counter
flint_invocations_total{function="f",outcome="error",version="$LATEST"} 0
flint_invocations_total{function="f",outcome="function_error",version="$LATEST"} 0
flint_invocations_total{function="f",outcome="success",version="$LATEST"} 4
flint_invocations_total{function="f",outcome="throttle",version="$LATEST"} 1
flint_invocations_total{function="f",outcome="timeout",version="$LATEST"} 0
# HELP flint_cold_starts_total Invocations that started a new sandbox, by function and version.
# TYPE flint_cold_starts_total counter
flint_cold_starts_total{function="f",version="$LATEST"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "flint_invocations_total", "flint_cold_starts_total"); err != nil {
		t.Error(err)
	}
	if n := sink.n.Load(); n != 4 {
		t.Errorf("%d records, want 4 (none for the throttled one)", n)
	}
}
