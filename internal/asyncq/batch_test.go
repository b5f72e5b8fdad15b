package asyncq

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/polltest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestQueuedStatusBeforeAndAfterDispatch: an accepted event answers
// "queued" at once (from memory, its batch not dispatched yet), then from
// its status record for any process once dispatched; concurrent Enqueues
// share batches and every one of them runs exactly once.
func TestQueuedStatusBeforeAndAfterDispatch(t *testing.T) {
	e := newEnvStart(t, nil, false)
	fn := e.fns.add("grouped", "")
	const n = 40
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = newUUID()
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.enqueue(fn, ids[i], `{"g":1}`)
		}()
	}
	wg.Wait()
	for _, id := range ids {
		st, err := e.svc.Status(context.Background(), id)
		if err != nil || st.Status != StateQueued {
			t.Fatalf("status of accepted %s: %+v, %v", id, st, err)
		}
	}
	info, err := e.svc.inbox.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 || info.State.Msgs >= n {
		t.Logf("inbox holds %d batches for %d events (no sharing this run)", info.State.Msgs, n)
	}

	// A second process dispatches (its own memory knows nothing).
	e.inv.set("grouped", &behavior{block: make(chan struct{})}) // hold the runs
	e.startService(nil, true)
	polltest.Until(t, 10*time.Second, "batches dispatched", func() bool {
		info, err := e.svc.inbox.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	})
	for _, id := range ids {
		st, err := e.svc.status.get(context.Background(), id)
		if err != nil || st == nil {
			t.Fatalf("no status record for dispatched %s: %v", id, err)
		}
	}
	e.inv.set("grouped", &behavior{})
	// The held invocations are cancelled at cleanup; restart to run all.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_ = e.svc.Close(ctx)
	cancel()
	e.startService(nil, true)
	for _, id := range ids {
		e.waitStatus(id, StateSucceeded)
	}
	runs := map[string]int{}
	for _, c := range e.inv.callsOf("grouped") {
		runs[c.requestID]++
	}
	for _, id := range ids {
		if runs[id] == 0 {
			t.Fatalf("event %s never ran", id)
		}
	}
}

// TestRedispatchSkipsTouchedEvents simulates a dispatcher that died in the
// middle of a batch: one event was published and has since run to the end
// (its message is gone, so de-duplication may not catch a re-publish after
// a backbone restart), another was published but not run yet. The batch is
// redelivered; the first must not run again, the second runs once.
func TestRedispatchSkipsTouchedEvents(t *testing.T) {
	e := newEnvStart(t, nil, false)
	fn := e.fns.add("redo", "")
	done, pending, fresh := "77777777-7777-4777-8777-777777777771", "77777777-7777-4777-8777-777777777772", "77777777-7777-4777-8777-777777777773"
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, id := range []string{done, pending, fresh} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.svc.Enqueue(ctx, fn, invocation.Request{RequestID: id, Payload: []byte(`{}`)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	// The "dying dispatcher": takes the batches and never acks.
	nc, err := nats.Connect(e.bb.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	cons, err := js.CreateOrUpdateConsumer(ctx, InboxStreamName, jetstream.ConsumerConfig{
		Durable: inboxConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second, MaxDeliver: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for range batch.Messages() {
		got++
	}
	if got == 0 {
		t.Fatal("no batch in the inbox")
	}
	// What it did before dying: "done" published, run, acked (so only
	// its terminal status remains); "pending" published, still queued.
	st := newStatus(&event{RequestID: done, Account: testAccount, Function: "redo", Qualifier: "$LATEST"})
	st.Status, st.Attempts, st.Delivered = StateSucceeded, 1, true
	if err := e.svc.status.put(ctx, st); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(fnKey{testAccount, "redo"}.subject())
	m.Data = []byte(`{"requestId":"` + pending + `","account":"` + testAccount + `","function":"redo","qualifier":"$LATEST","payload":"e30=","enqueuedAt":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`)
	m.Header.Set(jetstream.MsgIDHeader, pending)
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	e.startService(func(c *Config) { c.AckWait = time.Second }, true)
	e.waitStatus(pending, StateSucceeded)
	e.waitStatus(fresh, StateSucceeded)
	polltest.Until(t, 10*time.Second, "inbox drained", func() bool {
		info, err := e.svc.inbox.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	runs := map[string]int{}
	for _, c := range e.inv.callsOf("redo") {
		runs[c.requestID]++
	}
	if runs[done] != 0 || runs[pending] != 1 || runs[fresh] != 1 {
		t.Fatalf("runs %v: want done 0, pending 1, fresh 1", runs)
	}
	// Stored on FLINT_ASYNC: "pending" once (the re-publish was a
	// duplicate) and "fresh"; "done" was not published again.
	info, err := e.svc.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 2 {
		t.Fatalf("%d messages were stored on %s, want 2", info.State.LastSeq, StreamName)
	}
}
