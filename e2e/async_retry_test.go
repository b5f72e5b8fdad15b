package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/flintdev/flint/internal/polltest"
)

// recorderPy is a Python function that prints the event it gets on one
// line, so a function destination's log shows the invocation record.
const recorderPy = `import json

def handler(event, context):
    print("RECORD " + json.dumps(event, separators=(",", ":")))
    return {"recorded": context.aws_request_id}
`

// TestAsyncRetriesDestinationsAndDLQ: a failing function is run exactly
// 1 + MaximumRetryAttempts times (0, 1 and 2 retries), then its invocation
// record goes to the OnFailure destination (a Flint queue, or a function
// whose log shows the record) and the original event to its
// DeadLetterConfig queue; a succeeding function's record goes to OnSuccess.
// The retry waits come from --async-retry-delays.
func TestAsyncRetriesDestinationsAndDLQ(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), "--async-retry-delays", "1s,2s")
	c := s.lambda()

	python := offeredRuntime(t, c, "python3.")
	if _, err := c.CreateFunction(ctxT(t, 60*time.Second), &lambda.CreateFunctionInput{
		FunctionName: aws.String("recorder"),
		Runtime:      types.Runtime(python),
		Handler:      aws.String("app.handler"),
		Role:         aws.String("arn:aws:iam::000000000000:role/x"),
		Code:         &types.FunctionCode{ZipFile: zipFiles(map[string]zipEntry{"app.py": {data: []byte(recorderPy)}})},
	}); err != nil {
		t.Fatalf("CreateFunction recorder: %v", err)
	}

	type failCase struct {
		fn        string
		retries   int
		onFailure string // destination ARN
	}
	cases := []failCase{
		{"fail-0", 0, queueARN("failures")},
		{"fail-1", 1, functionARNOf("recorder")},
		{"fail-2", 2, queueARN("failures")},
	}
	for _, fc := range cases {
		createGoFn(t, c, fc.fn, func(in *lambda.CreateFunctionInput) {
			in.DeadLetterConfig = &types.DeadLetterConfig{TargetArn: aws.String(queueARN("dead"))}
		})
		putEventConfig(t, c, &lambda.PutFunctionEventInvokeConfigInput{
			FunctionName:         aws.String(fc.fn),
			MaximumRetryAttempts: aws.Int32(int32(fc.retries)),
			DestinationConfig:    &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(fc.onFailure)}},
		})
	}
	createGoFn(t, c, "succeed", nil)
	putEventConfig(t, c, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:      aws.String("succeed"),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String(queueARN("successes"))}},
	})

	payloads := map[string][]byte{}
	ids := map[string]string{}
	for _, fc := range cases {
		payloads[fc.fn] = []byte(fmt.Sprintf(`{"action":"error","name":"%s-event"}`, fc.fn))
		ids[fc.fn] = invokeEvent(t, c, fc.fn, payloads[fc.fn])
	}
	okPayload := []byte(`{"name":"fine"}`)
	okID := invokeEvent(t, c, "succeed", okPayload)

	// Attempts: 1 + retries, spaced by the retry delays (1 s, then 2 s).
	for _, fc := range cases {
		st := s.waitAsync(t, ids[fc.fn], 60*time.Second, asyncSettled)
		want := fc.retries + 1
		if st.Status != "failed" || st.Attempts != want || st.FunctionErrors != want || st.FunctionError != "Unhandled" {
			t.Errorf("%s: status %s, attempts %d, function errors %d (%q); want failed after %d attempts",
				fc.fn, st.Status, st.Attempts, st.FunctionErrors, st.FunctionError, want)
		}
		if st.Error == nil || st.Error.ErrorMessage != "boom: "+fc.fn+"-event" {
			t.Errorf("%s: status error %+v", fc.fn, st.Error)
		}
		minSpan := []time.Duration{0, time.Second, 3 * time.Second}[fc.retries]
		if span := st.FinishedAt.Sub(*st.StartedAt); span < minSpan {
			t.Errorf("%s: %d attempts within %v, want the retry delays (%v) between them", fc.fn, want, span, minSpan)
		}
	}
	// The log holds exactly one START per attempt.
	for _, fc := range cases {
		id := ids[fc.fn]
		want := fc.retries + 1
		polltest.Check(t, 20*time.Second, "one START line per attempt of "+fc.fn, func() error {
			logs := s.functionLogs(t, fc.fn)
			if n := countLogLines(logs, "START RequestId: "+id); n != want {
				return fmt.Errorf("%s: %d START lines for %s, want %d:\n%s", fc.fn, n, id, want, logs)
			}
			if n := countLogLines(logs, "REPORT RequestId: "+id); n != want {
				return fmt.Errorf("%s: %d REPORT lines for %s, want %d", fc.fn, n, id, want)
			}
			return nil
		})
	}

	// OnFailure queue: one record each for fail-0 and fail-2.
	failures := s.waitQueue(t, "failures", 2, 30*time.Second)
	if len(failures) != 2 {
		t.Errorf("failures queue has %d messages, want 2", len(failures))
	}
	byID := map[string]invocationRecord{}
	for _, m := range failures {
		r := decodeRecord(t, m.Body)
		byID[r.RequestContext.RequestID] = r
	}
	for _, fc := range []failCase{cases[0], cases[2]} {
		r, ok := byID[ids[fc.fn]]
		if !ok {
			t.Errorf("no OnFailure record for %s (%s) in %v", fc.fn, ids[fc.fn], failures)
			continue
		}
		checkFailureRecord(t, r, ids[fc.fn], fc.fn, fc.retries+1, payloads[fc.fn])
	}

	// OnFailure function: the recorder ran with fail-1's record.
	var rec invocationRecord
	polltest.Check(t, 60*time.Second, "the recorder's record", func() error {
		for _, l := range strings.Split(s.functionLogs(t, "recorder"), "\n") {
			if _, body, ok := strings.Cut(l, "RECORD "); ok {
				if err := json.Unmarshal([]byte(body), &rec); err != nil {
					return fmt.Errorf("recorder logged %q: %v", body, err)
				}
				return nil
			}
		}
		return fmt.Errorf("the recorder function has not logged a record yet")
	})
	checkFailureRecord(t, rec, ids["fail-1"], "fail-1", 2, payloads["fail-1"])

	// Dead-letter queue: the original events, with Lambda's attributes.
	dead := s.waitQueue(t, "dead", 3, 30*time.Second)
	if len(dead) != 3 {
		t.Errorf("dead-letter queue has %d messages, want 3", len(dead))
	}
	for _, fc := range cases {
		found := false
		for _, m := range dead {
			if m.Attributes["RequestID"] != ids[fc.fn] {
				continue
			}
			found = true
			if m.Body != string(payloads[fc.fn]) || m.Attributes["ErrorCode"] != "200" || !strings.Contains(m.Attributes["ErrorMessage"], "boom: "+fc.fn+"-event") {
				t.Errorf("%s: dead letter %+v, want the event with ErrorCode 200 and the error message", fc.fn, m)
			}
		}
		if !found {
			t.Errorf("%s: no dead letter with RequestID %s in %+v", fc.fn, ids[fc.fn], dead)
		}
	}

	// OnSuccess: the success record with the function's response.
	st := s.waitAsync(t, okID, 30*time.Second, asyncSettled)
	if st.Status != "succeeded" || st.Attempts != 1 {
		t.Errorf("succeed: %+v", *st)
	}
	succ := s.waitQueue(t, "successes", 1, 30*time.Second)
	if len(succ) != 1 {
		t.Fatalf("successes queue has %d messages, want 1", len(succ))
	}
	r := decodeRecord(t, succ[0].Body)
	checkRecordShape(t, r, okID, "succeed", "Success", 1, okPayload)
	var reply goReply
	if r.ResponseContext == nil || r.ResponseContext.StatusCode != 200 || r.ResponseContext.ExecutedVersion != "$LATEST" || r.ResponseContext.FunctionError != "" {
		t.Errorf("success responseContext = %+v", r.ResponseContext)
	}
	if err := json.Unmarshal(r.ResponsePayload, &reply); err != nil || reply.RequestID != okID || reply.Hello != "fine" {
		t.Errorf("success responsePayload = %s", r.ResponsePayload)
	}
}

// checkFailureRecord checks a RetriesExhausted record of gofn's error.
func checkFailureRecord(t *testing.T, r invocationRecord, id, fn string, attempts int, payload []byte) {
	t.Helper()
	checkRecordShape(t, r, id, fn, "RetriesExhausted", attempts, payload)
	if r.ResponseContext == nil || r.ResponseContext.StatusCode != 200 || r.ResponseContext.ExecutedVersion != "$LATEST" || r.ResponseContext.FunctionError != "Unhandled" {
		t.Errorf("%s: responseContext = %+v, want 200, $LATEST, Unhandled", fn, r.ResponseContext)
	}
	var doc errorDoc
	if err := json.Unmarshal(r.ResponsePayload, &doc); err != nil || doc.ErrorMessage != "boom: "+fn+"-event" || doc.ErrorType != "errorString" {
		t.Errorf("%s: responsePayload = %s, want gofn's error document", fn, r.ResponsePayload)
	}
}

// TestAsyncThrottledRetriedThenExpired: with reserved concurrency 0 every
// attempt is throttled. Throttled events stay queued and are retried with
// back-off (not dropped): once the reservation is lifted they run, once.
// An event that stays throttled past MaximumEventAgeInSeconds (60 s, the
// least Lambda allows; the test waits it out for real) is expired to the
// OnFailure destination and the dead-letter queue and never runs.
func TestAsyncThrottledRetriedThenExpired(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), "--async-throttle-backoff-max", "2s")
	c := s.lambda()
	for _, fn := range []string{"throttled", "expiring"} {
		createGoFn(t, c, fn, func(in *lambda.CreateFunctionInput) {
			in.DeadLetterConfig = &types.DeadLetterConfig{TargetArn: aws.String(queueARN(fn + "-dlq"))}
		})
		if _, err := c.PutFunctionConcurrency(ctxT(t, 10*time.Second), &lambda.PutFunctionConcurrencyInput{
			FunctionName: aws.String(fn), ReservedConcurrentExecutions: aws.Int32(0),
		}); err != nil {
			t.Fatalf("PutFunctionConcurrency %s 0: %v", fn, err)
		}
	}
	putEventConfig(t, c, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:             aws.String("expiring"),
		MaximumEventAgeInSeconds: aws.Int32(60),
		DestinationConfig:        &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(queueARN("expired"))}},
	})
	expPayload := []byte(`{"name":"never-runs"}`)
	expID := invokeEvent(t, c, "expiring", expPayload)
	enqueued := time.Now()

	const n = 3
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, invokeEvent(t, c, "throttled", []byte(fmt.Sprintf(`{"name":"th-%d"}`, i))))
	}
	// Throttled at least twice each, and waiting in the queue meanwhile.
	for _, id := range ids {
		st := s.waitAsync(t, id, 30*time.Second, func(st *asyncStatus) bool { return st.Throttles >= 2 && st.Status == "queued" })
		if st.NextAttemptAt == nil || st.Error == nil || st.Error.ErrorType != "TooManyRequestsException" {
			t.Errorf("throttled event %s: %+v, want a next attempt time and TooManyRequestsException", id, *st)
		}
	}
	if _, err := c.DeleteFunctionConcurrency(ctxT(t, 10*time.Second), &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("throttled")}); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		st := s.waitAsync(t, id, 30*time.Second, asyncSettled)
		var reply goReply
		if err := json.Unmarshal(st.Response, &reply); st.Status != "succeeded" || err != nil || reply.Hello != fmt.Sprintf("th-%d", i) {
			t.Errorf("throttled event %s after the reservation was lifted: %+v", id, *st)
		}
		// Attempts (approximateInvokeCount) include the throttled ones.
		if st.Attempts != st.Throttles+1 {
			t.Errorf("throttled event %s: %d attempts, %d throttles; want one more attempt than throttles", id, st.Attempts, st.Throttles)
		}
		t.Logf("event %s: throttled %d times, then succeeded", id, st.Throttles)
	}
	polltest.Check(t, 20*time.Second, "each throttled event to run once", func() error {
		logs := s.functionLogs(t, "throttled")
		for _, id := range ids {
			if k := countLogLines(logs, "START RequestId: "+id); k != 1 {
				return fmt.Errorf("%d START lines for %s, want 1 (throttled attempts never start)", k, id)
			}
		}
		return nil
	})

	// The event that can never run expires after 60 s.
	st := s.waitAsync(t, expID, 100*time.Second, asyncSettled)
	age := st.FinishedAt.Sub(st.EnqueuedAt)
	t.Logf("expired event: throttled %d times, expired %v after it was queued (%v by the test's clock)", st.Throttles, age, time.Since(enqueued))
	if st.Status != "expired" || st.Throttles < 5 || st.Attempts != st.Throttles {
		t.Errorf("expiring event: %+v, want expired after many throttles", *st)
	}
	// Never before its maximum age (both times are the server's). How soon
	// after is a matter of the retry schedule, which asyncq's tests check
	// with a fake clock; here a loaded machine may be slow.
	if age < 60*time.Second {
		t.Errorf("expired %v after it was queued, before its maximum age of 60 s", age)
	}
	exp := s.waitQueue(t, "expired", 1, 20*time.Second)
	r := decodeRecord(t, exp[0].Body)
	checkRecordShape(t, r, expID, "expiring", "EventAgeExceeded", st.Attempts, expPayload)
	if r.ResponseContext != nil || r.ResponsePayload != nil {
		t.Errorf("expired record has a response (%+v, %s), but the event never ran", r.ResponseContext, r.ResponsePayload)
	}
	dlq := s.waitQueue(t, "expiring-dlq", 1, 20*time.Second)
	if m := dlq[0]; m.Body != string(expPayload) || m.Attributes["RequestID"] != expID || m.Attributes["ErrorCode"] != "429" {
		t.Errorf("expired dead letter = %+v, want the event with ErrorCode 429", m)
	}
	if logs := s.functionLogs(t, "expiring"); strings.Contains(logs, expID) {
		t.Errorf("the expired event ran:\n%s", logs)
	}
}
