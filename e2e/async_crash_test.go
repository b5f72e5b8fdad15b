package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/flintdev/flint/internal/polltest"
)

// sendEvents sends one Event invocation per payload from `workers`
// goroutines and returns the request ids (by payload index) and how long
// it took. Any refusal fails the test.
func sendEvents(t *testing.T, c *lambda.Client, fn string, payloads [][]byte, workers int) ([]string, time.Duration) {
	t.Helper()
	ids := make([]string, len(payloads))
	errs := make([]error, len(payloads))
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(payloads) {
					return
				}
				ids[i], errs[i] = tryInvokeEvent(c, fn, payloads[i])
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	return ids, took
}

// waitAllSettled polls every status until all are terminal and delivered
// and returns them by request id.
func (s *flintServer) waitAllSettled(t *testing.T, ids []string, d time.Duration) map[string]*asyncStatus {
	t.Helper()
	out := map[string]*asyncStatus{}
	deadline := time.Now().Add(d)
	for {
		pending := 0
		var lastErr error
		for _, id := range ids {
			if st := out[id]; st != nil && asyncSettled(st) {
				continue
			}
			st, err := s.asyncStatusOf(id)
			if err != nil {
				lastErr = err
				pending++
				continue
			}
			out[id] = st
			if !asyncSettled(st) {
				pending++
			}
		}
		if pending == 0 {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events not settled within %v (last error %v)", pending, len(ids), d, lastErr)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

var handledRE = regexp.MustCompile(`handled \S* for (\S+)`)

// handledCounts counts gofn's "handled <action> for <name>" lines by name.
func handledCounts(logs string) map[string]int {
	n := map[string]int{}
	for _, m := range handledRE.FindAllStringSubmatch(logs, -1) {
		n[m[1]]++
	}
	return n
}

// startLedgerFn starts a server (with a short ack wait, so that events a
// crash interrupted come back quickly) and creates function fn whose
// successes are recorded, one durable record per event, in the Flint queue
// ledger. restart starts a server again on the same data dir.
func startLedgerFn(t *testing.T, fn, ledger string) (s *flintServer, c *lambda.Client, restart func() *flintServer) {
	t.Helper()
	data := t.TempDir()
	flags := []string{"--async-ack-wait", "5s"}
	restart = func() *flintServer { return startServer(t, data, flags...) }
	s = restart()
	c = s.lambda()
	createGoFn(t, c, fn, func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(30) })
	putEventConfig(t, c, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:      aws.String(fn),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String(queueARN(ledger))}},
	})
	return s, c, restart
}

// TestAsyncCrashLosesNothing accepts N events, kills the server with
// SIGKILL while it is working through them, restarts it on the same data
// dir, and checks that every accepted event was executed: the ledger is
// the OnSuccess destination (a Flint queue, durable, one record per event
// as its message id is derived from the request id) and the status
// records (attempts = executions started, including the one the crash
// interrupted). The function's own log lines are counted too, as a
// second, weaker witness (logs are shipped after an invocation ends and
// the crash can lose them).
func TestAsyncCrashLosesNothing(t *testing.T) {
	s, c, restart := startLedgerFn(t, "crashfn", "ledger")

	const n = 300
	payloads := make([][]byte, n)
	names := make([]string, n)
	for i := range payloads {
		names[i] = fmt.Sprintf("ev-%03d", i)
		payloads[i] = []byte(fmt.Sprintf(`{"action":"sleep","ms":40,"name":"%s"}`, names[i]))
	}
	ids, took := sendEvents(t, c, "crashfn", payloads, 16)
	t.Logf("accepted %d events in %v: %.0f events/s", n, took, float64(n)/took.Seconds())

	// Crash twice: once about a third of them are done, and again at two
	// thirds, each time with events running and others queued.
	var running, done int
	var crashAt time.Time
	const crashes = 2
	for k := 1; k <= crashes; k++ {
		mark := ids[k*n/3]
		polltest.Check(t, 120*time.Second, "the crash mark "+mark+" to run", func() error {
			st, err := s.asyncStatusOf(mark)
			if err != nil {
				return err
			}
			if !st.terminal() {
				return fmt.Errorf("event %d: %s", k*n/3, st.Status)
			}
			return nil
		})
		s.kill()
		crashAt = time.Now()
		s = restart()
	}
	sts := s.waitAllSettled(t, ids, 5*time.Minute)
	t.Logf("all %d events settled %v after the last restart", n, time.Since(crashAt))
	for _, st := range sts {
		switch {
		case st.Attempts > 1:
			running++
		case st.FinishedAt != nil && st.FinishedAt.Before(crashAt):
			done++
		}
	}
	logServerTrouble(t, s)

	ledger := s.drainQueue(t, "ledger", 4*n)
	recorded := map[string]int{} // request id -> records
	for _, m := range ledger {
		r := decodeRecord(t, m.Body)
		if r.RequestContext.Condition != "Success" {
			t.Errorf("ledger record %s: condition %s", r.RequestContext.RequestID, r.RequestContext.Condition)
		}
		recorded[r.RequestContext.RequestID]++
	}

	var logs map[string]int
	var logText string
	logErr := polltest.Poll(30*time.Second, func() error {
		resp, err := http.Get(s.url() + "/flint/v1/functions/crashfn/logs")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		logText = readAll(resp.Body)
		logs = handledCounts(logText)
		if len(logs) < n {
			// The crash may have lost some log lines for good; wait a
			// bit for the ones still in flight, then count what is there.
			return fmt.Errorf("log lines for %d of %d events", len(logs), n)
		}
		return nil
	})
	if logErr != nil {
		t.Logf("log evidence incomplete: %v", logErr)
	}

	var lost, notSucceeded, reRun, overBudget, ledgerDup, logDup, logMissing, attempts, starts int
	for i, id := range ids {
		st := sts[id]
		attempts += st.Attempts
		starts += countLogLines(logText, "START RequestId: "+id)
		if recorded[id] == 0 {
			lost++
			t.Errorf("event %d (%s) accepted but not in the ledger; status %+v", i, id, *st)
		}
		ledgerDup += max(recorded[id]-1, 0)
		if st.Status != "succeeded" {
			notSucceeded++
			t.Errorf("event %d (%s): %+v", i, id, *st)
		}
		if st.Attempts > 1 {
			reRun++
		}
		// One attempt, plus one per crash that may have interrupted it.
		if st.Attempts > 1+crashes {
			overBudget++
			t.Errorf("event %d (%s) started %d times, %d crashes allow at most %d", i, id, st.Attempts, crashes, 1+crashes)
		}
		switch k := logs[names[i]]; {
		case k == 0:
			logMissing++
		case k > 1:
			logDup += k - 1
		}
	}
	if len(recorded) != n {
		t.Errorf("ledger holds %d request ids, want %d (extra ids: records of events nobody sent)", len(recorded), n)
	}
	t.Logf("attempts recorded in status records %d, START lines in the logs %d (the difference: log lines of interrupted attempts lost in the crash)", attempts, starts)
	t.Logf("CRASH RESULT (%d kill -9): accepted %d, executed (ledger) %d, lost %d, not succeeded %d, "+
		"events started more than once (status attempts) %d, over budget %d, duplicate ledger records %d, "+
		"duplicate executions in logs %d, events with no log line %d; finished before the last crash %d",
		crashes, n, len(recorded), lost, notSucceeded, reRun, overBudget, ledgerDup, logDup, logMissing, done)
}

// logServerTrouble logs (without failing) the server's warnings and
// errors, for the report of a crash test.
func logServerTrouble(t *testing.T, s *flintServer) {
	t.Helper()
	var bad []string
	for _, l := range strings.Split(s.log(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			bad = append(bad, l)
		}
	}
	t.Logf("restarted server logged %d warnings/errors", len(bad))
	for i, l := range bad {
		if i == 10 {
			t.Logf("...")
			break
		}
		t.Logf("  %s", l)
	}
}

// handlerStart is when gofn's handler started by its own clock (the
// startMs of its reply, kept in the status record).
func handlerStart(t *testing.T, st *asyncStatus) time.Time {
	t.Helper()
	var r struct {
		StartMs int64 `json:"startMs"`
	}
	if err := json.Unmarshal(st.Response, &r); err != nil || r.StartMs == 0 {
		t.Fatalf("event %s: no startMs in the response %s", st.RequestID, st.Response)
	}
	return time.UnixMilli(r.StartMs)
}

// TestAsyncCrashWhileAccepting kills the server (SIGKILL) while clients
// are still sending events: every event that was answered 202 must run
// after the restart. Events whose request failed with the crash may or may
// not have been queued; those that ran are counted (the client could not
// know them, as with any lost response).
func TestAsyncCrashWhileAccepting(t *testing.T) {
	s, c, restart := startLedgerFn(t, "acceptfn", "accept-ledger")

	const n, killAfter, workers = 400, 150, 16
	ids := make([]string, n)
	errs := make([]error, n)
	var next, accepted atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				ids[i], errs[i] = tryInvokeEvent(c, "acceptfn", []byte(fmt.Sprintf(`{"action":"sleep","ms":20,"name":"acc-%03d"}`, i)))
				if errs[i] == nil {
					accepted.Add(1)
				}
			}
		}()
	}
	polltest.Check(t, 60*time.Second, "events accepted before the kill", func() error {
		if a := accepted.Load(); a < killAfter {
			return fmt.Errorf("%d events accepted", a)
		}
		return nil
	})
	s.kill()
	wg.Wait()

	var ok []string
	acceptedName := map[string]string{} // payload name -> request id
	refused := 0
	for i := range ids {
		if errs[i] != nil {
			refused++
			continue
		}
		ok = append(ok, ids[i])
		acceptedName[fmt.Sprintf("acc-%03d", i)] = ids[i]
	}
	s = restart()
	sts := s.waitAllSettled(t, ok, 5*time.Minute)
	logServerTrouble(t, s)
	// Events the client never heard about may still be running: take
	// ledger records until all accepted ones are there and no more come.
	var ledger []queueMessage
	unacknowledged, quiet := 0, 0
	polltest.Check(t, 60*time.Second, "the ledger to hold every accepted event", func() error {
		msgs := s.drainQueue(t, "accept-ledger", 2*n)
		ledger = append(ledger, msgs...)
		if len(msgs) == 0 && len(ledger) >= len(ok) {
			quiet++
		} else {
			quiet = 0
		}
		if quiet < 20 { // a second without new records
			return fmt.Errorf("ledger has %d records", len(ledger))
		}
		return nil
	})
	recorded := map[string]int{}
	for _, m := range ledger {
		r := decodeRecord(t, m.Body)
		var ev struct{ Name string }
		json.Unmarshal(r.RequestPayload, &ev)
		if id, ok := acceptedName[ev.Name]; ok {
			if id != r.RequestContext.RequestID {
				t.Errorf("ledger: %s ran as request %s, but was accepted as %s", ev.Name, r.RequestContext.RequestID, id)
			}
			recorded[id]++
		} else {
			unacknowledged++
		}
	}
	lost, reRun := 0, 0
	for _, id := range ok {
		if recorded[id] != 1 {
			lost++
			t.Errorf("accepted event %s has %d ledger records, want 1; status %+v", id, recorded[id], *sts[id])
		}
		if sts[id].Attempts > 1 {
			reRun++
		}
		if sts[id].Attempts > 2 {
			t.Errorf("accepted event %s started %d times, one crash allows at most 2", id, sts[id].Attempts)
		}
	}
	t.Logf("CRASH-WHILE-ACCEPTING RESULT: sent %d, accepted (202) %d, refused by the crash %d, accepted and executed %d, lost %d, started more than once %d, executed without a 202 %d",
		n, len(ok), refused, len(recorded), lost, reRun, unacknowledged)
}

// TestAsyncSIGTERMKeepsQueuedEvents: a clean shutdown (SIGTERM) while
// events are queued, running, and waiting for a retry loses none of them:
// running ones finish, the others are run after the restart, and a
// retry's budget is neither reset nor exceeded.
func TestAsyncSIGTERMKeepsQueuedEvents(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	flags := []string{"--async-retry-delays", "4s", "--async-ack-wait", "5s"}
	s := startServer(t, data, flags...)
	c := s.lambda()
	createGoFn(t, c, "slow", func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(30) })
	putEventConfig(t, c, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:      aws.String("slow"),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String(queueARN("slow-done"))}},
	})
	createGoFn(t, c, "flaky", nil)
	putEventConfig(t, c, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:         aws.String("flaky"),
		MaximumRetryAttempts: aws.Int32(1),
		DestinationConfig:    &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(queueARN("flaky-failed"))}},
	})

	flakyID := invokeEvent(t, c, "flaky", []byte(`{"action":"error","name":"flaky"}`))
	const n = 24
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = []byte(fmt.Sprintf(`{"action":"sleep","ms":1000,"name":"slow-%02d"}`, i))
	}
	ids, _ := sendEvents(t, c, "slow", payloads, 4)

	// Stop while the flaky event waits for its retry and slow events are
	// both running and queued.
	flaky := s.waitAsync(t, flakyID, 30*time.Second, func(st *asyncStatus) bool { return st.FunctionErrors == 1 && st.Status == "queued" })
	var before map[string]string
	polltest.Check(t, 30*time.Second, "events running and queued at the stop", func() error {
		before = map[string]string{}
		counts := map[string]int{}
		for _, id := range ids {
			st, err := s.asyncStatusOf(id)
			if err != nil {
				return err
			}
			before[id] = st.Status
			counts[st.Status]++
		}
		if counts["running"] == 0 || counts["queued"] == 0 {
			return fmt.Errorf("slow events by state: %v", counts)
		}
		return nil
	})
	s.stop()
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("flint server exited with %d after SIGTERM", code)
	}
	// What the stopped server left: running events finished, queued ones
	// are still queued.
	left := 0
	s2 := startServer(t, data, flags...)
	for _, id := range ids {
		st, err := s2.asyncStatusOf(id)
		if err != nil {
			t.Fatal(err)
		}
		if before[id] == "running" && st.Status != "succeeded" {
			t.Errorf("event %s was running at SIGTERM and is now %s, want it finished before the exit", id, st.Status)
		}
		if !st.terminal() {
			left++
		}
	}
	t.Logf("SIGTERM left %d of %d slow events queued", left, n)

	sts := s2.waitAllSettled(t, append([]string{flakyID}, ids...), 2*time.Minute)
	for _, id := range ids {
		if st := sts[id]; st.Status != "succeeded" || st.Attempts != 1 {
			t.Errorf("slow event %s: %s after %d attempts, want succeeded after 1", id, st.Status, st.Attempts)
		}
	}
	if st := sts[flakyID]; st.Status != "failed" || st.Attempts != 2 || st.FunctionErrors != 2 {
		t.Errorf("flaky event: %s, attempts %d, function errors %d; want failed after exactly 2 attempts", st.Status, st.Attempts, st.FunctionErrors)
	} else if st.FinishedAt.Before(*flaky.NextAttemptAt) {
		t.Errorf("flaky event's retry ran at %v, before its retry delay ended (%v)", st.FinishedAt, flaky.NextAttemptAt)
	}
	done := s2.drainQueue(t, "slow-done", 4*n)
	seen := map[string]int{}
	for _, m := range done {
		seen[decodeRecord(t, m.Body).RequestContext.RequestID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("slow event %s has %d OnSuccess records, want 1", id, seen[id])
		}
	}
	if f := s2.waitQueue(t, "flaky-failed", 1, 20*time.Second); len(f) != 1 || decodeRecord(t, f[0].Body).RequestContext.ApproximateInvokeCount != 2 {
		t.Errorf("flaky OnFailure records: %+v", f)
	}
	// Each slow event ran once: one START per request id across both
	// servers' lifetimes (logs are shipped before a clean exit).
	polltest.Check(t, 20*time.Second, "each event to run once after the restart", func() error {
		logs := s2.functionLogs(t, "slow")
		for _, id := range ids {
			if k := countLogLines(logs, "START RequestId: "+id); k != 1 {
				return fmt.Errorf("%d START lines for %s, want 1", k, id)
			}
		}
		if k := countLogLines(s2.functionLogs(t, "flaky"), "START RequestId: "+flakyID); k != 2 {
			return fmt.Errorf("%d START lines for the flaky event, want 2", k)
		}
		return nil
	})
}

// TestAsyncRetryDelaySurvivesCrash: an event waiting for its retry when
// the server is killed is retried after the restart, not before its
// retry delay has passed, and its retry budget is kept.
func TestAsyncRetryDelaySurvivesCrash(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	flags := []string{"--async-retry-delays", "8s", "--async-ack-wait", "3s"}
	s := startServer(t, data, flags...)
	c := s.lambda()
	createGoFn(t, c, "flaky", nil)
	putEventConfig(t, c, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("flaky"), MaximumRetryAttempts: aws.Int32(1)})
	id := invokeEvent(t, c, "flaky", []byte(`{"action":"error","name":"flaky"}`))
	first := s.waitAsync(t, id, 30*time.Second, func(st *asyncStatus) bool { return st.FunctionErrors == 1 && st.Status == "queued" })
	s.kill()
	s = startServer(t, data, flags...)
	st := s.waitAsync(t, id, 60*time.Second, asyncSettled)
	if st.Status != "failed" || st.Attempts != 2 || st.FunctionErrors != 2 {
		t.Errorf("after the crash: %s, attempts %d, function errors %d; want failed after exactly 2 attempts", st.Status, st.Attempts, st.FunctionErrors)
	}
	if st.FinishedAt.Before(*first.NextAttemptAt) {
		t.Errorf("the retry ran at %v, before its retry delay ended at %v", st.FinishedAt, first.NextAttemptAt)
	}
}

// TestAsyncThroughputAndLatency measures, for the design note, how fast
// Event invocations are accepted (202s per second from 16 concurrent
// clients), how fast a backlog drains (one function, the default 8
// events of a function at once), and the time from the 202 to the
// function starting (status enqueuedAt → startedAt, one clock), both
// under that backlog and for events sent one at a time to a warm function.
func TestAsyncThroughputAndLatency(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.lambda()
	createGoFn(t, c, "bench", nil)
	// Warm eight sandboxes so the figures are not cold starts.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := json.Marshal(map[string]any{"action": "sleep", "ms": 300})
			if _, err := c.Invoke(ctxT(t, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String("bench"), Payload: b}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	const n = 300
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = []byte(fmt.Sprintf(`{"name":"b-%03d"}`, i))
	}
	ids, took := sendEvents(t, c, "bench", payloads, 16)
	sts := s.waitAllSettled(t, ids, 5*time.Minute)
	var lat, handlerLat []time.Duration
	first, last := time.Time{}, time.Time{}
	for _, st := range sts {
		if st.Status != "succeeded" {
			t.Errorf("bench event %s: %s", st.RequestID, st.Status)
			continue
		}
		lat = append(lat, st.StartedAt.Sub(st.EnqueuedAt))
		handlerLat = append(handlerLat, handlerStart(t, st).Sub(st.EnqueuedAt))
		if first.IsZero() || st.EnqueuedAt.Before(first) {
			first = st.EnqueuedAt
		}
		if st.FinishedAt.After(last) {
			last = *st.FinishedAt
		}
	}
	t.Logf("BENCH burst: %d events accepted in %v = %.0f events/s; drained in %v = %.0f events/s; "+
		"enqueued->invoke p50 %v p95 %v, enqueued->handler start p50 %v p95 %v (backlog included)",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), last.Sub(first).Round(time.Millisecond),
		float64(n)/last.Sub(first).Seconds(), durPercentile(lat, 50).Round(time.Millisecond), durPercentile(lat, 95).Round(time.Millisecond),
		durPercentile(handlerLat, 50).Round(time.Millisecond), durPercentile(handlerLat, 95).Round(time.Millisecond))

	// One at a time: the queue's own latency.
	const m = 40
	var one, fromClient []time.Duration
	for i := 0; i < m; i++ {
		id := invokeEvent(t, c, "bench", []byte(fmt.Sprintf(`{"name":"p-%02d"}`, i)))
		got202 := time.Now()
		st := s.waitAsync(t, id, 30*time.Second, asyncSettled)
		if st.Status != "succeeded" {
			t.Fatalf("paced event %s: %s", id, st.Status)
		}
		one = append(one, st.StartedAt.Sub(st.EnqueuedAt))
		// The handler may start before the client has read the 202.
		fromClient = append(fromClient, handlerStart(t, st).Sub(got202))
	}
	t.Logf("BENCH paced: %d events one at a time: enqueued->invoke p50 %v p95 %v max %v; client's 202->handler start (function's clock, ms resolution) p50 %v p95 %v",
		m, durPercentile(one, 50).Round(100*time.Microsecond), durPercentile(one, 95).Round(100*time.Microsecond), durPercentile(one, 100).Round(100*time.Microsecond),
		durPercentile(fromClient, 50), durPercentile(fromClient, 95))
}
