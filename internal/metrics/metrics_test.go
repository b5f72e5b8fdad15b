package metrics

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/invocation"
)

func newMetrics(t testing.TB, src Sources) *Metrics {
	t.Helper()
	m, err := New(Config{Sources: src})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestInvocationOutcomes(t *testing.T) {
	m := newMetrics(t, Sources{})
	run := func(res invocation.Result, err error) {
		i := m.Start("f", "1")
		if v := testutil.ToFloat64(m.concurrent.WithLabelValues("f", "1")); v != 1 {
			t.Errorf("concurrent executions during an invocation = %v", v)
		}
		i.End(&res, err)
	}
	run(invocation.Result{Duration: time.Millisecond, ColdStart: true, InitDuration: 50 * time.Millisecond,
		Cold: &invocation.ColdSteps{Placement: time.Microsecond, SandboxCreate: 20 * time.Millisecond}}, nil)
	run(invocation.Result{Duration: time.Millisecond}, nil)
	run(invocation.Result{FunctionError: "Unhandled", ErrorType: "errorString"}, nil)
	run(invocation.Result{FunctionError: "Unhandled", ErrorType: "Sandbox.Timedout"}, nil)
	run(invocation.Result{}, concurrency.Throttled(concurrency.ReasonScaleRate))
	run(invocation.Result{}, errors.New("no host"))
	for outcome, want := range map[string]float64{"success": 2, "function_error": 1, "timeout": 1, "throttle": 1, "error": 1} {
		if got := testutil.ToFloat64(m.invocations.WithLabelValues("f", "1", outcome)); got != want {
			t.Errorf("%s: %v, want %v", outcome, got, want)
		}
	}
	if got := testutil.ToFloat64(m.coldStarts.WithLabelValues("f", "1")); got != 1 {
		t.Errorf("cold starts %v", got)
	}
	if got := testutil.ToFloat64(m.concurrent.WithLabelValues("f", "1")); got != 0 {
		t.Errorf("concurrent executions after = %v", got)
	}
	if n := testutil.CollectAndCount(m.duration); n != 1 {
		t.Errorf("%d duration series", n)
	}
}

func TestOperation(t *testing.T) {
	for _, c := range []struct{ method, path, want string }{
		{"POST", "/2015-03-31/functions/hello/invocations", "Invoke"},
		{"GET", "/2015-03-31/functions/", "ListFunctions"},
		{"POST", "/2015-03-31/functions", "CreateFunction"},
		{"GET", "/2015-03-31/functions/hello", "GetFunction"},
		{"DELETE", "/2015-03-31/functions/hello", "DeleteFunction"},
		{"PUT", "/2015-03-31/functions/hello/code", "UpdateFunctionCode"},
		{"PUT", "/2015-03-31/functions/hello/configuration", "UpdateFunctionConfiguration"},
		{"POST", "/2015-03-31/functions/hello/versions", "PublishVersion"},
		{"PUT", "/2015-03-31/functions/hello/aliases/live", "UpdateAlias"},
		{"GET", "/2016-08-19/account-settings", "GetAccountSettings"},
		{"PUT", "/2017-10-31/functions/hello/concurrency", "PutFunctionConcurrency"},
		{"GET", "/2019-09-30/functions/hello/provisioned-concurrency", "GetProvisionedConcurrencyConfig"},
		{"PUT", "/2019-09-25/functions/hello/event-invoke-config", "PutFunctionEventInvokeConfig"},
		{"GET", "/2019-09-25/functions/hello/event-invoke-config/list", "ListFunctionEventInvokeConfigs"},
		{"GET", "/flint/v1/functions/hello/logs", "flint:Logs"},
		{"GET", "/flint/v1/functions/hello/invocations", "flint:Invocations"},
		{"POST", "/flint/v1/queues/dlq/redrive", "flint:QueueRedrive"},
		{"GET", "/flint/v1/stats", "flint:Stats"},
		{"GET", "/metrics", "flint:Metrics"},
		{"GET", "/console/app.js", "flint:Console"},
		{"GET", "/healthz", "flint:Health"},
		{"PATCH", "/2015-03-31/functions/hello", "other"},
		{"GET", "/2015-03-31/functions/a/b/c/d/e/f/g", "other"},
		{"GET", "/favicon.ico", "other"},
		{"GET", "/", "other"},
	} {
		if got := Operation(c.method, c.path); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.method, c.path, got, c.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Operation("POST", "/2015-03-31/functions/hello/invocations") }); n != 0 {
		t.Errorf("Operation allocates %v times", n)
	}
}

// FuzzOperation: any path gives an operation from the fixed set (bounded
// label values), never a piece of the path.
func FuzzOperation(f *testing.F) {
	f.Add("GET", "/2015-03-31/functions/x/invocations")
	f.Add("POST", "/flint/v1/queues/q/redrive")
	f.Add("GET", "//flint//v1/functions/../logs")
	f.Fuzz(func(t *testing.T, method, path string) {
		op := Operation(method, path)
		if op == "" || strings.Contains(op, "/") || len(op) > 40 {
			t.Fatalf("Operation(%q, %q) = %q", method, path, op)
		}
		if path != "" && strings.Contains(op, path) && len(path) > 8 {
			t.Fatalf("Operation(%q, %q) = %q echoes the path", method, path, op)
		}
	})
}

func TestHTTPCountsAndFlushes(t *testing.T) {
	m := newMetrics(t, Sources{})
	h := m.HTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flint/v1/functions/f/logs":
			w.Write([]byte("a"))
			w.(http.Flusher).Flush() // following logs needs Flush through the wrapper
		case "/2015-03-31/functions/f/invocations":
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			http.NotFound(w, r)
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, p := range []struct{ method, path string }{
		{"GET", "/flint/v1/functions/f/logs"}, {"POST", "/2015-03-31/functions/f/invocations"},
		{"POST", "/2015-03-31/functions/f/invocations"}, {"GET", "/nothing/here"},
	} {
		req, _ := http.NewRequest(p.method, srv.URL+p.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for _, c := range []struct {
		op, code string
		want     float64
	}{{"flint:Logs", "200", 1}, {"Invoke", "429", 2}, {"other", "404", 1}} {
		if got := testutil.ToFloat64(m.apiRequests.WithLabelValues(c.op, c.code)); got != c.want {
			t.Errorf("%s %s: %v, want %v", c.op, c.code, got, c.want)
		}
	}
}

func TestSourcesAtScrape(t *testing.T) {
	oldest := time.Now().Add(-90 * time.Second)
	m := newMetrics(t, Sources{
		Sandboxes: func() (map[string]int, int) { return map[string]int{"idle": 2, "busy": 1}, 1 },
		Hosts: func() []Host {
			return []Host{{ID: "a", Sandboxes: 3, MemoryMB: 1024, MemoryReservedMB: 384, MemoryUsedBytes: 100 << 20}, {ID: "b", MemoryUsedBytes: -1}}
		},
		Async:       func(context.Context) (Queue, error) { return Queue{Depth: 4, Oldest: oldest}, nil },
		Streams:     func(context.Context) ([]Stream, error) { return nil, errors.New("backbone down") },
		LogsDropped: func() int64 { return 7 },
	})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`flint_sandboxes{state="idle"} 2`, `flint_sandboxes{state="creating"} 0`, `flint_sandboxes_provisioned 1`,
		`flint_host_memory_reserved_bytes{host="a"} 4.02653184e+08`, `flint_host_memory_used_bytes{host="a"} 1.048576e+08`,
		`flint_async_queue_depth 4`, `flint_logs_dropped_total 7`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
	if strings.Contains(body, `flint_host_memory_used_bytes{host="b"}`) {
		t.Error("unknown memory use reported")
	}
	if strings.Contains(body, "flint_backbone_storage_bytes") {
		t.Error("a failed source still reported")
	}
	if !strings.Contains(body, "flint_async_oldest_event_age_seconds 9") { // 90 s and a bit
		t.Errorf("oldest event age missing:\n%s", body)
	}
}

// BenchmarkObserve is the metrics' own cost per warm invocation.
func BenchmarkObserve(b *testing.B) {
	m := newMetrics(b, Sources{})
	res := invocation.Result{Duration: time.Millisecond, MemoryUsedBytes: 30 << 20}
	b.ReportAllocs()
	for b.Loop() {
		m.Start("fn", "$LATEST").End(&res, nil)
	}
}
