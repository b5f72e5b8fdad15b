package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/flintdev/flint/internal/polltest"
)

// scrape reads the server's /metrics and parses it.
func (s *flintServer) scrape() (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(s.url() + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// metricValue sums the samples of family whose labels include want
// (a counter's or gauge's value, a histogram's sample count); ok is false
// when no sample matches.
func metricValue(fams map[string]*dto.MetricFamily, family string, want map[string]string) (v float64, ok bool) {
	f := fams[family]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for k, wv := range want {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == wv {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		ok = true
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		}
	}
	return v, ok
}

// creationsOK reads flint_sandbox_creations_total{result="ok"}.
func creationsOK(t *testing.T, srv *flintServer) float64 {
	t.Helper()
	fams, err := srv.scrape()
	if err != nil {
		t.Fatal(err)
	}
	v, _ := metricValue(fams, "flint_sandbox_creations_total", map[string]string{"result": "ok"})
	return v
}

// TestMetricsMatchWorkload sends a known mix of invocations (successes,
// function errors, a timeout, throttles, async events that fail and are
// retried and dead-lettered) through the real server, scraping /metrics
// while it runs, and checks that the counters say exactly what was sent.
// It also reads the invocation records back.
func TestMetricsMatchWorkload(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--async-retry-delays", "200ms")
	c := srv.lambda()
	createGoFn(t, c, "obs", func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(1) })
	createGoFn(t, c, "obsthrottled", nil)
	if _, err := c.PutFunctionConcurrency(ctxT(t, 10*time.Second), &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("obsthrottled"), ReservedConcurrentExecutions: aws.Int32(0),
	}); err != nil {
		t.Fatal(err)
	}
	createGoFn(t, c, "obsasync", func(in *lambda.CreateFunctionInput) {
		in.DeadLetterConfig = &types.DeadLetterConfig{TargetArn: aws.String(queueARN("obs-dlq"))}
	})
	putEventConfig(t, c, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName: aws.String("obsasync"), MaximumRetryAttempts: aws.Int32(1),
	})

	// Scrape all along the workload: /metrics must answer while
	// invocations run, and counters never go down.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var scrapeErr error
	scrapes := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		last := 0.0
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			fams, err := srv.scrape()
			if err != nil {
				scrapeErr = err
				return
			}
			scrapes++
			v, _ := metricValue(fams, "flint_invocations_total", map[string]string{"function": "obs"})
			if v < last {
				scrapeErr = fmt.Errorf("flint_invocations_total went down: %v after %v", v, last)
				return
			}
			last = v
		}
	}()

	const nOK, nErr, nThrottled, nAsync = 5, 3, 2, 2
	for i := 0; i < nOK; i++ {
		invoke(t, c, "obs", map[string]any{"name": "ok"}, false)
	}
	for i := 0; i < nErr; i++ {
		if out := invoke(t, c, "obs", map[string]any{"action": "error", "name": "x"}, false); out.FunctionError == nil {
			t.Fatal("expected a function error")
		}
	}
	if out := invoke(t, c, "obs", map[string]any{"action": "sleep", "ms": 3000}, false); out.FunctionError == nil {
		t.Fatal("expected a timeout")
	}
	for i := 0; i < nThrottled; i++ {
		_, err := c.Invoke(ctxT(t, 30*time.Second), &lambda.InvokeInput{FunctionName: aws.String("obsthrottled"), Payload: []byte(`{}`)})
		var tm *types.TooManyRequestsException
		if !errors.As(err, &tm) {
			t.Fatalf("invoke with reserved concurrency 0: %v, want TooManyRequestsException", err)
		}
	}
	var ids []string
	for i := 0; i < nAsync; i++ {
		ids = append(ids, invokeEvent(t, c, "obsasync", []byte(`{"action":"error","name":"async"}`)))
	}
	for _, id := range ids {
		srv.waitAsync(t, id, 60*time.Second, asyncSettled)
	}
	close(stop)
	wg.Wait()
	if scrapeErr != nil {
		t.Fatal(scrapeErr)
	}
	if scrapes == 0 {
		t.Fatal("no scrape during the workload")
	}

	fams, err := srv.scrape()
	if err != nil {
		t.Fatal(err)
	}
	fn := func(name, outcome string) map[string]string {
		return map[string]string{"function": name, "version": "$LATEST", "outcome": outcome}
	}
	expect := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"flint_invocations_total", fn("obs", "success"), nOK},
		{"flint_invocations_total", fn("obs", "function_error"), nErr},
		{"flint_invocations_total", fn("obs", "timeout"), 1},
		{"flint_invocations_total", fn("obs", "throttle"), 0},
		{"flint_invocations_total", fn("obsthrottled", "throttle"), nThrottled},
		// Each async event runs twice (one retry), and fails both times.
		{"flint_invocations_total", fn("obsasync", "function_error"), 2 * nAsync},
		{"flint_invocation_duration_seconds", map[string]string{"function": "obs"}, nOK + nErr + 1},
		{"flint_cold_starts_total", map[string]string{"function": "obs"}, 1},
		{"flint_invocation_init_duration_seconds", map[string]string{"function": "obs"}, 1},
		{"flint_cold_start_step_seconds", map[string]string{"function": "obs", "step": "sandbox_create"}, 1},
		{"flint_concurrent_executions", map[string]string{"function": "obs"}, 0},
		{"flint_api_requests_total", map[string]string{"operation": "Invoke", "code": "200"}, nOK + nErr + 1},
		{"flint_api_requests_total", map[string]string{"operation": "Invoke", "code": "429"}, nThrottled},
		{"flint_api_requests_total", map[string]string{"operation": "Invoke", "code": "202"}, nAsync},
		{"flint_api_requests_total", map[string]string{"operation": "CreateFunction", "code": "201"}, 3},
		{"flint_async_retries_total", map[string]string{"function": "obsasync", "reason": "function_error"}, nAsync},
		{"flint_async_deliveries_total", map[string]string{"function": "obsasync", "destination": "dlq", "result": "ok"}, nAsync},
		{"flint_async_queue_depth", nil, 0},
		// The process driver's named steps, once per sandbox created.
		{"flint_sandbox_create_step_seconds", map[string]string{"step": "exec"}, creationsOK(t, srv)},
	}
	for _, e := range expect {
		got, ok := metricValue(fams, e.family, e.labels)
		if e.want == 0 && !ok {
			continue // never seen: zero
		}
		if !ok || got != e.want {
			t.Errorf("%s%v = %v (present %v), want %v", e.family, e.labels, got, ok, e.want)
		}
	}
	for _, family := range []string{"flint_sandbox_creations_total", "flint_sandbox_create_seconds",
		"flint_host_memory_reserved_bytes", "flint_host_memory_capacity_bytes", "flint_sandboxes",
		"flint_backbone_storage_bytes", "flint_backbone_publish_seconds", "flint_api_request_duration_seconds"} {
		if v, ok := metricValue(fams, family, nil); !ok || (strings.HasSuffix(family, "_total") && v == 0) {
			t.Errorf("%s missing or zero (%v)", family, v)
		}
	}
	if v, _ := metricValue(fams, "flint_sandbox_creations_total", map[string]string{"result": "ok"}); v < 2 {
		t.Errorf("flint_sandbox_creations_total{result=ok} = %v, want at least 2 (obs, obsasync)", v)
	}
	// The sandboxes' memory: what their cgroups use now is within what
	// the host reserved for them.
	used, ok1 := metricValue(fams, "flint_host_memory_used_bytes", nil)
	reserved, ok2 := metricValue(fams, "flint_host_memory_reserved_bytes", nil)
	if !ok1 || !ok2 || used <= 0 || reserved <= 0 || used > reserved {
		t.Errorf("host memory used %v (present %v), reserved %v (present %v)", used, ok1, reserved, ok2)
	}
	if v, ok := metricValue(fams, "flint_backbone_storage_bytes", map[string]string{"stream": "FLINT_LOGS"}); !ok || v <= 0 {
		t.Errorf("flint_backbone_storage_bytes{stream=FLINT_LOGS} = %v", v)
	}

	// The records of the same invocations.
	var recs struct {
		Invocations []struct {
			RequestID        string  `json:"requestId"`
			Start            string  `json:"start"`
			DurationMs       float64 `json:"durationMs"`
			BilledDurationMs int64   `json:"billedDurationMs"`
			MemoryUsedMB     int     `json:"memoryUsedMB"`
			ColdStart        bool    `json:"coldStart"`
			InitDurationMs   float64 `json:"initDurationMs"`
			Steps            *struct {
				Placement, CodeFetch, SandboxCreate, RuntimeInit float64
			} `json:"steps"`
			Host    string `json:"host"`
			Outcome string `json:"outcome"`
		} `json:"invocations"`
	}
	polltest.Check(t, 10*time.Second, "the invocation records", func() error {
		if code, err := httpGetJSON(srv.url()+"/flint/v1/functions/obs/invocations", &recs); err != nil || code != 200 {
			return fmt.Errorf("invocations: %d %v", code, err)
		}
		if n := len(recs.Invocations); n != nOK+nErr+1 {
			return fmt.Errorf("%d records, want %d", n, nOK+nErr+1)
		}
		return nil
	})
	outcomes := map[string]int{}
	for i, r := range recs.Invocations {
		outcomes[r.Outcome]++
		if r.RequestID == "" || r.Host == "" || r.Start == "" || r.BilledDurationMs < 1 || r.MemoryUsedMB <= 0 {
			t.Errorf("record %d incomplete: %+v", i, r)
		}
		if cold := i == 0; r.ColdStart != cold || (r.Steps != nil) != cold {
			t.Errorf("record %d: coldStart %v, steps %v", i, r.ColdStart, r.Steps)
		}
	}
	first := recs.Invocations[0]
	// RuntimeInit runs from the end of SandboxCreate to the runtime's
	// first /next; a runtime that is ready before the driver's Create
	// returns (a claimed sandbox on a loaded host) reports 0, never less.
	if first.Steps == nil || first.Steps.SandboxCreate <= 0 || first.Steps.RuntimeInit < 0 || first.InitDurationMs <= 0 {
		t.Errorf("cold start record without its steps: %+v", first)
	}
	if outcomes["success"] != nOK || outcomes["function_error"] != nErr || outcomes["timeout"] != 1 {
		t.Errorf("record outcomes %v", outcomes)
	}
	b, _ := json.Marshal(first)
	t.Logf("cold start record: %s; %d scrapes during the workload", b, scrapes)

	// A future since, and a bad one.
	if code, err := httpGetJSON(srv.url()+"/flint/v1/functions/obs/invocations?since="+time.Now().Add(time.Hour).UTC().Format(time.RFC3339), &recs); err != nil || code != 200 || len(recs.Invocations) != 0 {
		t.Errorf("future since: %d %v %d records", code, err, len(recs.Invocations))
	}
	var e map[string]any
	if code, _ := httpGetJSON(srv.url()+"/flint/v1/functions/obs/invocations?since=yesterday", &e); code != 400 {
		t.Errorf("bad since: %d %v", code, e)
	}
}

// TestFlintTopAndDeployProgress drives `flint top` (one frame, then a
// fixed number of refreshes) and the upload progress bar of `flint deploy`.
func TestFlintTopAndDeployProgress(t *testing.T) {
	srv := startServer(t, t.TempDir())
	zipPath := filepath.Join(t.TempDir(), "big.zip")
	if err := os.WriteFile(zipPath, goFnZip, 0o644); err != nil { // 6 MB: an aws-lambda-go binary
		t.Fatal(err)
	}
	out, err := srv.flintCLI(t, "deploy", zipPath, "--name", "big", "--progress", "always")
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if !strings.Contains(out, "uploading big [") || !strings.Contains(out, "100%") || !strings.Contains(out, "created arn:") {
		t.Errorf("deploy output without a finished progress bar:\n%q", out)
	}
	if out, _ := srv.flintCLI(t, "deploy", zipPath, "--name", "quiet"); strings.Contains(out, "uploading") {
		t.Errorf("progress bar without a terminal in auto mode:\n%q", out)
	}

	c := srv.lambda()
	for i := 0; i < 3; i++ {
		invoke(t, c, "big", map[string]any{"name": "top"}, false)
	}
	invoke(t, c, "big", map[string]any{"action": "error", "name": "top"}, false)
	// FUNCTION RUNTIME MEMORY INVOCATIONS ERRORS ... for big: 4 invocations, 1 error, 1 cold start.
	row := regexp.MustCompile(`(?m)^\s*big\s+provided\.al2023\s+128 MB\s+4\s+1\s+\S+\s+\S+\s+1\s+0\s+`)
	polltest.Check(t, 10*time.Second, "flint top to show the invocations", func() error {
		out, err := srv.flintCLI(t, "top", "--once")
		if err != nil {
			return fmt.Errorf("top: %v\n%s", err, out)
		}
		if !row.MatchString(out) || !strings.Contains(out, "sandboxes  0 busy, 1 idle") || !strings.Contains(out, "quiet") {
			return fmt.Errorf("top --once:\n%s", out)
		}
		if strings.Contains(out, "\x1b[") {
			return fmt.Errorf("--once printed terminal codes: %q", out)
		}
		return nil
	})
	out, _ = srv.flintCLI(t, "top", "--once")
	t.Logf("flint top --once:\n%s", out)
	out, err = srv.flintCLI(t, "top", "--count", "3", "--interval", "50ms")
	if err != nil {
		t.Fatalf("top --count 3: %v\n%s", err, out)
	}
	if n := strings.Count(out, "flint top "); n != 3 {
		t.Errorf("top --count 3 printed %d frames:\n%s", n, out)
	}
}
