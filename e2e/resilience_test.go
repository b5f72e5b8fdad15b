package e2e

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/flintdev/flint/internal/disktest"
	"github.com/flintdev/flint/internal/polltest"
)

// Resource exhaustion: a small and then a full data dir, and a clean
// shutdown in that state. The data dir is a tmpfs of a few MB mounted by
// the test (root only) and unmounted at its end.

func getStatus(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(resp.Body)
}

// TestSmallDataDir: on a 64 MB data dir the server starts with limits
// sized to it; on one too small even for the minimum it refuses to start,
// naming the flag.
func TestSmallDataDir(t *testing.T) {
	data := disktest.Small(t, "64m")
	s := startServer(t, data)
	if !strings.Contains(s.log(), "backbone storage") {
		t.Errorf("no storage limits in the log")
	}
	c := s.lambda()
	createGoFn(t, c, "small", nil)
	asReply(t, invoke(t, c, "small", map[string]any{"name": "small"}, false))
	s.stop()

	tiny := disktest.Small(t, "12m")
	out, err := exec.Command(flintBin, "server", "--listen", "127.0.0.1:0", "--data", tiny).CombinedOutput()
	if err == nil {
		t.Fatalf("flint server started on a 12 MB data dir:\n%s", out)
	}
	if !strings.Contains(string(out), "--nats-max-store") {
		t.Errorf("start on a 12 MB data dir failed without naming the flag:\n%s", out)
	}
	out, err = exec.Command(flintBin, "server", "--listen", "127.0.0.1:0", "--data", data, "--logs-max-bytes", "1GiB").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--logs-max-bytes") {
		t.Errorf("--logs-max-bytes 1GiB on a 64 MB data dir: err %v, output:\n%s", err, out)
	}
}

// eventResult is one Event invocation of a flood.
type eventResult struct {
	id   string
	err  error
	sent time.Time
	took time.Duration
}

// flood sends Event invocations from workers goroutines until stop is
// closed; results are appended to *out.
func flood(c *lambda.Client, fn string, workers int, stop chan struct{}, mu *sync.Mutex, out *[]eventResult) *sync.WaitGroup {
	var wg sync.WaitGroup
	var seq atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := seq.Add(1)
				start := time.Now()
				id, err := tryInvokeEvent(c, fn, []byte(fmt.Sprintf(`{"action":"sleep","ms":5,"name":"ev-%05d","key":"%s"}`, i, strings.Repeat("x", 2048))))
				mu.Lock()
				*out = append(*out, eventResult{id: id, err: err, sent: start, took: time.Since(start)})
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	return &wg
}

// TestDiskFullAsyncFlood fills the data dir's disk during a flood of Event
// invocations: refusals come at once and say "storage full" (no 202 for
// an event not stored), /readyz fails, warm synchronous invocations still
// run; once space is freed new events are accepted again without a
// restart, and every acknowledged event runs.
func TestDiskFullAsyncFlood(t *testing.T) {
	data := disktest.Small(t, "64m")
	s := startServer(t, data, "--async-ack-wait", "5s")
	c := s.lambda()
	const fn = "diskfull"
	createGoFn(t, c, fn, func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(30) })
	asReply(t, invoke(t, c, fn, map[string]any{"name": "warm"}, false))
	// Stored, never run: its code is unpacked while it is Pending, before
	// it becomes Active (other code than fn's: code is cached by digest).
	createGoFn(t, c, "coldwhilefull", func(in *lambda.CreateFunctionInput) { in.Code.ZipFile = goFnZip2 })

	var mu sync.Mutex
	var results []eventResult
	stop := make(chan struct{})
	wg := flood(c, fn, 8, stop, &mu, &results)
	accepted := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range results {
			if r.err == nil {
				n++
			}
		}
		return n
	}
	polltest.Check(t, 60*time.Second, "200 events to be accepted", func() error {
		if n := accepted(); n < 200 {
			return fmt.Errorf("%d events accepted", n)
		}
		return nil
	})

	filler := filepath.Join(data, "filler")
	disktest.Fill(t, filler)
	full := time.Now()
	polltest.Check(t, 30*time.Second, "/readyz to fail on the full disk", func() error {
		if code, body := getStatus(s.url() + "/readyz"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz on a full disk: %d %s", code, body)
		}
		return nil
	})
	_, readyBody := getStatus(s.url() + "/readyz")
	if code, _ := getStatus(s.url() + "/healthz"); code != 200 {
		t.Errorf("/healthz (liveness) answered %d on a full disk", code)
	}
	// Refusals while full.
	polltest.Check(t, 30*time.Second, "20 refusals on the full disk", func() error {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range results {
			if r.err != nil && r.sent.After(full) {
				n++
			}
		}
		if n < 20 {
			return fmt.Errorf("%d refusals since the disk filled", n)
		}
		return nil
	})
	// A 20 MB code upload is refused at once, in the user's terms.
	blob := make([]byte, 20<<20)
	rand.Read(blob)
	_, err := c.CreateFunction(ctxT(t, 60*time.Second), &lambda.CreateFunctionInput{
		FunctionName: aws.String("bigwhilefull"), Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
		Role: aws.String("arn:aws:iam::000000000000:role/x"),
		Code: &types.FunctionCode{ZipFile: zipFiles(map[string]zipEntry{"bootstrap": {data: []byte("#!/bin/sh\n"), mode: 0o755}, "blob": {data: blob}})},
	})
	checkRefusal(t, "CreateFunction with 20 MB of code on a full disk", err, "storage full")
	// A cold start of a function whose code was unpacked when it became
	// Active needs no space for its code: it runs, or, if the sandbox
	// itself cannot be set up, it is refused with a clear error and no
	// host path.
	cold, err := c.Invoke(ctxT(t, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String("coldwhilefull"), Payload: []byte(`{"name":"cold"}`)})
	if err != nil {
		checkRefusal(t, "cold start on a full disk", err, "")
	} else if r := asReply(t, cold); r.Hello != "cold" || r.Build != "v2" {
		t.Errorf("cold start on a full disk: %+v", r)
	}
	// A warm invocation needs no write: it still runs (its log is dropped).
	warm := asReply(t, invoke(t, c, fn, map[string]any{"name": "warm-while-full"}, false))
	if warm.Invocations < 2 {
		t.Errorf("invocation while full was not warm: %+v", warm)
	}

	freed := time.Now()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var recovered time.Time
	polltest.Check(t, 30*time.Second, "an event accepted after space was freed", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results {
			if r.err == nil && r.sent.After(freed) {
				recovered = r.sent.Add(r.took)
				return nil
			}
		}
		return errors.New("no event accepted since space was freed")
	})
	polltest.Check(t, 30*time.Second, "/readyz to pass after space was freed", func() error {
		if code, body := getStatus(s.url() + "/readyz"); code != 200 {
			return fmt.Errorf("/readyz after space was freed: %d %s", code, body)
		}
		return nil
	})
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	// Every refusal says what happened, none leaks a raw message; the
	// time to the first refusal and the slowest refusal while full.
	var firstRefusal time.Time
	var slowest time.Duration
	var ids []string
	refused, refusedFull := 0, 0
	for _, r := range results {
		if r.err == nil {
			ids = append(ids, r.id)
			continue
		}
		refused++
		var ae smithy.APIError
		if !errors.As(r.err, &ae) {
			t.Errorf("refusal is not an API error: %v", r.err)
			continue
		}
		msg := ae.ErrorMessage()
		if ae.ErrorCode() != "ServiceException" || !(strings.HasPrefix(msg, "storage full") || strings.HasPrefix(msg, "backbone unavailable")) {
			t.Errorf("refusal %s: %q, want ServiceException \"storage full: ...\"", ae.ErrorCode(), msg)
		}
		if strings.Contains(msg, "nats:") || strings.Contains(msg, "/") && strings.Contains(msg, "nats/") {
			t.Errorf("refusal leaks a raw message: %q", msg)
		}
		if r.sent.After(full) && r.sent.Before(freed) {
			refusedFull++
			slowest = max(slowest, r.took)
			if firstRefusal.IsZero() || r.sent.Add(r.took).Before(firstRefusal) {
				firstRefusal = r.sent.Add(r.took)
			}
		}
	}
	sts := map[string]*asyncStatus{}
	lost := 0
	deadline := time.Now().Add(3 * time.Minute)
	for _, id := range ids {
		for {
			st, err := s.asyncStatusOf(id)
			if err == nil && st.terminal() {
				sts[id] = st
				if st.Status != "succeeded" {
					t.Errorf("event %s ended %s: %+v", id, st.Status, st.Error)
				}
				break
			}
			if time.Now().After(deadline) {
				lost++
				t.Errorf("accepted event %s did not run: %+v %v", id, st, err)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var st struct {
		LogsDropped int64 `json:"logsDropped"`
		Backbone    struct {
			Restarts int `json:"restarts"`
		} `json:"backbone"`
	}
	if _, err := httpGetJSON(s.url()+"/flint/v1/stats", &st); err != nil {
		t.Fatal(err)
	}
	if st.LogsDropped == 0 {
		t.Errorf("no function logs counted as dropped while the disk was full")
	}
	t.Logf("DISK-FULL RESULT: accepted %d, refused %d (%d while full), first refusal %v after the disk filled, slowest refusal %v, "+
		"first accept %v after space was freed, lost %d, logs dropped %d, backbone restarts %d; /readyz while full: %s",
		len(ids), refused, refusedFull, firstRefusal.Sub(full).Round(time.Millisecond), slowest.Round(time.Millisecond),
		recovered.Sub(freed).Round(time.Millisecond), lost, st.LogsDropped, st.Backbone.Restarts, strings.TrimSpace(readyBody))
}

// checkRefusal checks that err is a ServiceException whose message starts
// with prefix (any when "") and carries no host path or raw NATS message.
func checkRefusal(t *testing.T, what string, err error, prefix string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Errorf("%s: %v, want a ServiceException", what, err)
		return
	}
	msg := ae.ErrorMessage()
	if ae.ErrorCode() != "ServiceException" || !strings.HasPrefix(msg, prefix) {
		t.Errorf("%s: %s %q, want ServiceException %q...", what, ae.ErrorCode(), msg, prefix)
	}
	if strings.Contains(msg, "nats:") || strings.Contains(msg, "/tmp/") || strings.Contains(msg, "/var/") || strings.Contains(msg, "jetstream") {
		t.Errorf("%s: the message leaks internals: %q", what, msg)
	}
	t.Logf("%s: %s: %s", what, ae.ErrorCode(), msg)
}

// TestDiskFullShutdown: SIGTERM while the data dir is full ends the server
// within its bound (30 s for requests + 20 s for the components).
func TestDiskFullShutdown(t *testing.T) {
	data := disktest.Small(t, "64m")
	s := startServer(t, data)
	c := s.lambda()
	const fn = "fullstop"
	createGoFn(t, c, fn, nil)
	for i := range 20 {
		invokeEvent(t, c, fn, []byte(fmt.Sprintf(`{"action":"sleep","ms":50,"name":"q-%d"}`, i)))
	}
	filler := filepath.Join(data, "filler")
	disktest.Fill(t, filler)
	polltest.Check(t, 30*time.Second, "/readyz to fail on the full disk", func() error {
		if code, _ := getStatus(s.url() + "/readyz"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz %d on a full disk", code)
		}
		return nil
	})
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("flint server did not exit within 60 s of SIGTERM on a full disk")
	}
	t.Logf("DISK-FULL SHUTDOWN: exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if log := s.log(); strings.Contains(log, "flint server shutting down") {
		var steps []string
		for _, l := range strings.Split(log[strings.Index(log, "flint server shutting down"):], "\n") {
			if strings.Contains(l, "shutdown") {
				steps = append(steps, l)
			}
		}
		t.Logf("shutdown steps that failed or ran out of time:\n%s", strings.Join(steps, "\n"))
	}
	os.Remove(filler)
}
