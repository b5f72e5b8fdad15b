package asyncq

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/asyncq/queues"
	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/polltest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func (e *env) putConfig(fn, qual string, c *EventInvokeConfig) {
	e.t.Helper()
	if err := c.validate(); err != nil {
		e.t.Fatal(err)
	}
	if err := e.svc.configs.put(context.Background(), testAccount, fn, qual, c); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) queueMessages(name string, want int) []queues.Message {
	e.t.Helper()
	var msgs []queues.Message
	polltest.Until(e.t, 20*time.Second, "queue "+name, func() bool {
		m, err := e.svc.Queues().Peek(context.Background(), testAccount, name, 100)
		if err != nil {
			e.t.Fatal(err)
		}
		msgs = m
		return len(m) >= want
	})
	return msgs
}

func decodeRecord(t *testing.T, b []byte) Record {
	t.Helper()
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("record %s: %v", b, err)
	}
	return r
}

func TestEnqueueRunsAndSucceeds(t *testing.T) {
	e := newEnv(t, nil)
	fn := e.fns.add("hello", "")
	e.putConfig("hello", "$LATEST", &EventInvokeConfig{OnSuccess: "arn:aws:sqs:us-east-1:" + testAccount + ":ok"})
	e.enqueue(fn, "11111111-1111-4111-8111-111111111111", `{"n":1}`)

	st := e.waitStatus("11111111-1111-4111-8111-111111111111", StateSucceeded)
	if st.Attempts != 1 || st.StartedAt == nil || st.FinishedAt == nil {
		t.Fatalf("status %+v", st)
	}
	var resp struct {
		OK   bool            `json:"ok"`
		Echo json.RawMessage `json:"echo"`
	}
	if err := json.Unmarshal(st.Response, &resp); err != nil || !resp.OK || string(resp.Echo) != `{"n":1}` {
		t.Fatalf("response %s (%v)", st.Response, err)
	}
	if calls := e.inv.callsOf("hello"); len(calls) != 1 || calls[0].requestID != st.RequestID {
		t.Fatalf("calls %+v", calls)
	}
	msgs := e.queueMessages("ok", 1)
	r := decodeRecord(t, []byte(msgs[0].Body))
	if r.Version != "1.0" || r.RequestContext.Condition != CondSuccess || r.RequestContext.RequestID != st.RequestID ||
		r.RequestContext.FunctionArn != fn.QualifiedARN() || r.RequestContext.ApproximateInvokeCount != 1 ||
		string(r.RequestPayload) != `{"n":1}` || r.ResponseContext == nil || r.ResponseContext.StatusCode != 200 ||
		r.ResponseContext.ExecutedVersion != "$LATEST" || r.ResponseContext.FunctionError != "" {
		t.Fatalf("record %s", msgs[0].Body)
	}
	if _, err := time.Parse(time.RFC3339Nano, r.Timestamp); err != nil {
		t.Fatalf("timestamp %q: %v", r.Timestamp, err)
	}
}

func TestFunctionErrorsRetriedThenDestinations(t *testing.T) {
	for _, retries := range []int{0, 1, 2} {
		t.Run("retries="+string(rune('0'+retries)), func(t *testing.T) {
			e := newEnv(t, nil)
			dlq := "arn:aws:sqs:us-east-1:" + testAccount + ":dlq"
			fn := e.fns.add("bad", dlq)
			e.fns.add("onfail", "")
			e.inv.set("bad", &behavior{failTimes: 100})
			e.putConfig("bad", "$LATEST", &EventInvokeConfig{
				MaximumRetryAttempts: intp(retries),
				OnFailure:            "arn:aws:lambda:us-east-1:" + testAccount + ":function:onfail",
			})
			id := "22222222-2222-4222-8222-22222222222" + string(rune('0'+retries))
			e.enqueue(fn, id, `{"order":7}`)

			st := e.waitStatus(id, StateFailed)
			if st.Attempts != retries+1 || st.FunctionErrors != retries+1 {
				t.Fatalf("attempts %d functionErrors %d, want %d", st.Attempts, st.FunctionErrors, retries+1)
			}
			calls := e.inv.callsOf("bad")
			if len(calls) != retries+1 {
				t.Fatalf("%d calls, want %d", len(calls), retries+1)
			}
			for i, c := range calls {
				if c.requestID != id {
					t.Fatalf("call %d has request id %s", i, c.requestID)
				}
				if i > 0 && c.at.Sub(calls[i-1].at) < 20*time.Millisecond {
					t.Fatalf("retry %d came %s after the previous attempt, before its delay", i, c.at.Sub(calls[i-1].at))
				}
			}
			if st.Error == nil || st.Error.ErrorType != "Error" || st.Error.ErrorMessage == "" {
				t.Fatalf("status error %+v", st.Error)
			}

			// OnFailure function receives the record as a new async event.
			polltest.Until(t, 20*time.Second, "onfail invoked", func() bool { return len(e.inv.callsOf("onfail")) == 1 })
			c := e.inv.callsOf("onfail")[0]
			if c.requestID == id {
				t.Fatal("destination invocation reuses the source request id")
			}
			r := decodeRecord(t, c.payload)
			if r.RequestContext.Condition != CondRetriesExhausted || r.RequestContext.RequestID != id ||
				r.RequestContext.ApproximateInvokeCount != retries+1 || string(r.RequestPayload) != `{"order":7}` ||
				r.ResponseContext == nil || r.ResponseContext.FunctionError != "Unhandled" || r.ResponseContext.StatusCode != 200 {
				t.Fatalf("record %s", c.payload)
			}
			var rp map[string]string
			if err := json.Unmarshal(r.ResponsePayload, &rp); err != nil || rp["errorType"] != "Error" {
				t.Fatalf("responsePayload %s", r.ResponsePayload)
			}

			// The DLQ gets the original event too (Lambda sends to both).
			msgs := e.queueMessages("dlq", 1)
			if len(msgs) != 1 || msgs[0].Body != `{"order":7}` || msgs[0].Attributes["RequestID"] != id ||
				msgs[0].Attributes["ErrorCode"] != "200" || msgs[0].Attributes["ErrorMessage"] == "" {
				t.Fatalf("dlq %+v", msgs)
			}
		})
	}
}

func TestExpiredEventNotRun(t *testing.T) {
	e := newEnvStart(t, nil, false)
	fn := e.fns.add("late", "arn:aws:sqs:us-east-1:"+testAccount+":late-dlq")
	e.putConfig("late", "$LATEST", &EventInvokeConfig{
		MaximumEventAgeInSeconds: intp(60),
		OnFailure:                "arn:aws:sqs:us-east-1:" + testAccount + ":late-fail",
	})
	e.clock.set(time.Now().Add(-2 * time.Minute))
	e.enqueue(fn, "33333333-3333-4333-8333-333333333333", `{"x":1}`)
	e.clock.set(time.Time{})
	if err := e.svc.Start(); err != nil {
		t.Fatal(err)
	}
	st := e.waitStatus("33333333-3333-4333-8333-333333333333", StateExpired)
	if st.Attempts != 0 || len(e.inv.callsOf("late")) != 0 {
		t.Fatalf("expired event ran: %+v", st)
	}
	r := decodeRecord(t, []byte(e.queueMessages("late-fail", 1)[0].Body))
	if r.RequestContext.Condition != CondEventAgeExceeded || r.RequestContext.ApproximateInvokeCount != 0 || r.ResponseContext != nil {
		t.Fatalf("record %+v", r)
	}
	if m := e.queueMessages("late-dlq", 1); m[0].Body != `{"x":1}` {
		t.Fatalf("dlq %+v", m)
	}
}

func TestThrottledEventsRetried(t *testing.T) {
	e := newEnv(t, nil)
	fn := e.fns.add("busy", "")
	e.inv.set("busy", &behavior{throttleTimes: 4})
	e.enqueue(fn, "44444444-4444-4444-8444-444444444444", `{}`)
	st := e.waitStatus("44444444-4444-4444-8444-444444444444", StateSucceeded)
	if st.Throttles != 4 || st.Attempts != 5 || st.FunctionErrors != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestPerFunctionFairness(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.PerFunctionConcurrency = 2; c.Concurrency = 4 })
	slow := e.fns.add("slow", "")
	fast := e.fns.add("fast", "")
	release := make(chan struct{})
	e.inv.set("slow", &behavior{block: release})
	for i := 0; i < 10; i++ {
		e.enqueue(slow, "slow-"+string(rune('a'+i)), `{}`)
	}
	polltest.Until(t, 10*time.Second, "slow running", func() bool { return len(e.inv.callsOf("slow")) == 2 })
	for i := 0; i < 5; i++ {
		e.enqueue(fast, "fast-"+string(rune('a'+i)), `{}`)
	}
	for i := 0; i < 5; i++ {
		e.waitStatus("fast-"+string(rune('a'+i)), StateSucceeded)
	}
	if n := len(e.inv.callsOf("slow")); n != 2 {
		t.Fatalf("slow function had %d events running, budget is 2", n)
	}
	close(release)
	for i := 0; i < 10; i++ {
		e.waitStatus("slow-"+string(rune('a'+i)), StateSucceeded)
	}
}

func TestServiceRestartPicksUpUnacked(t *testing.T) {
	e := newEnv(t, nil)
	fn := e.fns.add("long", "")
	block := make(chan struct{})
	e.inv.set("long", &behavior{block: block})
	e.enqueue(fn, "55555555-5555-4555-8555-555555555555", `{}`)
	polltest.Until(t, 10*time.Second, "running", func() bool { return e.inv.running.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := e.svc.Close(ctx)
	cancel()
	if err == nil {
		t.Fatal("Close returned nil although an invocation outlived its ctx")
	}
	st, _ := e.svc.Status(context.Background(), "55555555-5555-4555-8555-555555555555")
	if st == nil || st.terminal() {
		t.Fatalf("abandoned event recorded as %+v", st)
	}

	e.inv.set("long", &behavior{})
	e.startService(nil, true)
	st = e.waitStatus("55555555-5555-4555-8555-555555555555", StateSucceeded)
	if st.Attempts != 2 {
		t.Fatalf("attempts %d, want 2 (one abandoned, one completed)", st.Attempts)
	}
	calls := e.inv.callsOf("long")
	if len(calls) != 2 || calls[0].requestID != calls[1].requestID {
		t.Fatalf("calls %+v", calls)
	}
}

func TestBackboneRestartKeepsQueuedEvents(t *testing.T) {
	e := newEnvStart(t, nil, false)
	fn := e.fns.add("durable", "")
	ids := []string{"66666666-6666-4666-8666-666666666661", "66666666-6666-4666-8666-666666666662", "66666666-6666-4666-8666-666666666663"}
	for _, id := range ids {
		e.enqueue(fn, id, `{"keep":true}`)
	}
	// Same id again: de-duplicated.
	e.enqueue(fn, ids[0], `{"keep":true}`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.svc.Close(ctx)
	e.bb.Close()

	bb, err := backbone.Start(backbone.Config{DataDir: e.dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	e.bb = bb
	e.startService(nil, true)
	for _, id := range ids {
		e.waitStatus(id, StateSucceeded)
	}
	if n := len(e.inv.callsOf("durable")); n != len(ids) {
		t.Fatalf("%d invocations, want %d", n, len(ids))
	}
}

func TestDeletedFunctionEventDropped(t *testing.T) {
	e := newEnvStart(t, nil, false)
	fn := e.fns.add("gone", "")
	e.enqueue(fn, "77777777-7777-4777-8777-777777777777", `{}`)
	e.fns.mu.Lock()
	delete(e.fns.fns, "gone")
	e.fns.mu.Unlock()
	if err := e.svc.Start(); err != nil {
		t.Fatal(err)
	}
	st := e.waitStatus("77777777-7777-4777-8777-777777777777", StateFailed)
	if st.Error == nil || st.Error.ErrorType != "ResourceNotFoundException" || len(e.inv.callsOf("gone")) != 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestLargePayload queues a 1 MB event (Lambda's limit), larger than a
// backbone message once encoded: it travels through the object store and
// reaches the function unchanged.
func TestLargePayload(t *testing.T) {
	e := newEnv(t, nil)
	fn := e.fns.add("big", "")
	payload := `"` + strings.Repeat("x", 1<<20-2) + `"`
	e.enqueue(fn, "99999999-9999-4999-8999-999999999999", payload)
	e.waitStatus("99999999-9999-4999-8999-999999999999", StateSucceeded)
	calls := e.inv.callsOf("big")
	if len(calls) != 1 || string(calls[0].payload) != payload {
		t.Fatalf("%d calls, payload intact: %v", len(calls), len(calls) == 1 && string(calls[0].payload) == payload)
	}
	polltest.Until(t, 10*time.Second, "payload object deleted", func() bool {
		_, found, err := e.svc.large.get(context.Background(), "99999999-9999-4999-8999-999999999999")
		return err == nil && !found
	})
}

// TestThrottledUntilAgeExpires: an event throttled forever is retried, not
// dropped, until its maximum age passes; then it is expired to the
// dead-letter queue with the throttle as its error.
func TestThrottledUntilAgeExpires(t *testing.T) {
	e := newEnv(t, nil)
	fn := e.fns.add("choked", "arn:aws:sqs:us-east-1:"+testAccount+":choked-dlq")
	e.inv.set("choked", &behavior{throttleTimes: 1 << 30})
	e.putConfig("choked", "$LATEST", &EventInvokeConfig{MaximumEventAgeInSeconds: intp(60)})
	e.enqueue(fn, "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", `{"t":1}`)
	polltest.Until(t, 10*time.Second, "3 throttled attempts", func() bool { return len(e.inv.callsOf("choked")) >= 3 })
	e.clock.set(time.Now().Add(2 * time.Minute))
	st := e.waitStatus("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", StateExpired)
	if st.Throttles < 3 || st.FunctionErrors != 0 || st.Error == nil || st.Error.ErrorType != "TooManyRequestsException" {
		t.Fatalf("status %+v error %+v", st, st.Error)
	}
	m := e.queueMessages("choked-dlq", 1)
	if m[0].Body != `{"t":1}` || m[0].Attributes["ErrorCode"] != "429" || m[0].Attributes["RequestID"] != st.RequestID {
		t.Fatalf("dlq %+v", m)
	}
}

// TestCrashedPollerEventRedelivered simulates a poller process dying
// mid-invocation: its own backbone connection drops without acking, and
// another Service receives the event after AckWait and runs it.
func TestCrashedPollerEventRedelivered(t *testing.T) {
	e := newEnvStart(t, nil, false)
	fn := e.fns.add("crashy", "")
	nc, err := nats.Connect(e.bb.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	block := make(chan struct{})
	defer close(block)
	inv1 := newFakeInvoker()
	inv1.set("crashy", &behavior{block: block})
	cfg := testConfig(e)
	cfg.JetStream, cfg.Invoker = js, inv1
	doomed, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := doomed.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = doomed.Close(ctx)
	})
	e.enqueue(fn, "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb", `{}`)
	polltest.Until(t, 10*time.Second, "doomed poller running the event", func() bool { return inv1.running.Load() == 1 })
	nc.Close() // the "crash": no ack, no heartbeat, no Nak

	if err := e.svc.Start(); err != nil { // the survivor, on the main connection
		t.Fatal(err)
	}
	st := e.waitStatus("bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb", StateSucceeded)
	if st.Attempts != 2 || len(e.inv.callsOf("crashy")) != 1 {
		t.Fatalf("status %+v, survivor calls %d", st, len(e.inv.callsOf("crashy")))
	}
}

// TestDestinationsStayInTheAccount: an event's destinations in another
// account are refused (undeliverable), not delivered: a queue always, a
// function unless its resource policy lets the event's account invoke it.
func TestDestinationsStayInTheAccount(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	ev := &event{RequestID: "22222222-2222-4222-8222-222222222222", Account: "999999999999", Region: "us-east-1", Function: "other", Qualifier: "$LATEST"}
	err := e.svc.send(ctx, ev, "arn:aws:sqs:us-east-1:"+testAccount+":ok", "success", []byte(`{}`), nil)
	if !skippable(err) || !strings.Contains(err.Error(), "is not in account 999999999999") {
		t.Fatalf("queue of another account: %v", err)
	}
	if msgs, _ := e.svc.queues.Peek(ctx, testAccount, "ok", 10); len(msgs) != 0 {
		t.Fatalf("another account's event reached the queue: %+v", msgs)
	}
	fn := e.fns.add("target", "")
	err = e.svc.send(ctx, ev, fn.ARN(), "success", []byte(`{}`), nil)
	if !skippable(err) || !strings.Contains(err.Error(), "no resource-based policy") {
		t.Fatalf("function of another account without a policy: %v", err)
	}
	fn.Policy = &metadata.Policy{Statements: []metadata.Statement{{Sid: "s", Action: "lambda:InvokeFunction", Principal: "999999999999"}}}
	if err := e.svc.send(ctx, ev, fn.ARN(), "success", []byte(`{}`), nil); err != nil {
		t.Fatalf("function of another account whose policy allows it: %v", err)
	}
}
