package sqs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/nats-io/nats.go/jetstream"
)

// twoServers opens two engines on one embedded backbone, as two Flint
// servers sharing it would.
func twoServers(t *testing.T) (*Service, *Service) {
	t.Helper()
	bb, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bb.Close)
	open := func() *Service {
		other, err := backbone.Start(backbone.Config{URL: bb.ClientURL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(other.Close)
		s, err := New(context.Background(), Config{JetStream: other.JetStream(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		return s
	}
	return open(), open()
}

// Receivers on two servers share a queue: each message goes to exactly one
// of them, and deletes on one are seen by the other.
func TestTwoServersReceiveEachMessageOnce(t *testing.T) {
	a, b := twoServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const acct, n = "000000000000", 300
	if _, err := a.CreateQueue(ctx, acct, "shared", map[string]string{"VisibilityTimeout": "60"}, nil); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := b.Send(ctx, acct, "shared", SendInput{Body: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for _, s := range []*Service{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait := 500 * time.Millisecond
			for {
				msgs, err := s.Receive(ctx, acct, "shared", ReceiveInput{Max: 10, Wait: &wait})
				if err != nil {
					t.Error(err)
					return
				}
				if len(msgs) == 0 {
					return
				}
				for _, m := range msgs {
					mu.Lock()
					got[m.Body]++
					mu.Unlock()
					if err := s.DeleteMessage(ctx, acct, "shared", m.ReceiptHandle); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if c := got[fmt.Sprint(i)]; c != 1 {
			t.Errorf("message %d received %d times", i, c)
		}
	}
	q, err := a.GetQueue(ctx, acct, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := b.Count(ctx, q); err != nil || c.Visible != 0 || c.InFlight != 0 {
		t.Fatalf("after deleting everything: %+v %v", c, err)
	}
}

// A receipt handle forged to carry another queue's stream sequence
// deletes nothing of that queue.
func TestForgedHandleDeletesNothingElsewhere(t *testing.T) {
	a, _ := twoServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, acct := range []string{"111111111111", "222222222222"} {
		if _, err := a.CreateQueue(ctx, acct, "q", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Send(ctx, "222222222222", "q", SendInput{Body: "victim"}); err != nil {
		t.Fatal(err)
	}
	info, err := a.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seq := info.State.LastSeq
	forged := b64(fmt.Sprintf("$JS.ACK.FLINT_QUEUES.%s.1.%d.1.1.0", consumerName("111111111111", "q"), seq))
	if err := a.DeleteMessage(ctx, "111111111111", "q", forged); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	if err := a.ChangeVisibility(ctx, "111111111111", "q", forged, 0); AsError(err).Code != MessageNotInflight {
		t.Fatalf("ChangeVisibility with a forged handle: %v", err)
	}
	wait := time.Second
	msgs, err := a.Receive(ctx, "222222222222", "q", ReceiveInput{Max: 1, Wait: &wait})
	if err != nil || len(msgs) != 1 || msgs[0].Body != "victim" {
		t.Fatalf("the victim's message: %+v %v", msgs, err)
	}
}

// Messages past the queue's retention period are dropped on receive.
func TestRetentionDropsOldMessages(t *testing.T) {
	a, _ := twoServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const acct = "000000000000"
	if _, err := a.CreateQueue(ctx, acct, "short", map[string]string{"MessageRetentionPeriod": "60"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, acct, "short", SendInput{Body: "old"}); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Minute)
	a.cfg.Clock = func() time.Time { return later }
	wait := 500 * time.Millisecond
	if msgs, err := a.Receive(ctx, acct, "short", ReceiveInput{Max: 10, Wait: &wait}); err != nil || len(msgs) != 0 {
		t.Fatalf("expired message received: %+v %v", msgs, err)
	}
}

// DeleteReceived acknowledges a batch and, shortly after, the stored
// messages are gone from the backbone (purged below the ack floor), while
// a message left unacknowledged is kept and comes back.
func TestDeleteReceivedPurgesStorage(t *testing.T) {
	a, _ := twoServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const acct = "000000000000"
	if _, err := a.CreateQueue(ctx, acct, "esm", map[string]string{"VisibilityTimeout": "1"}, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := a.Send(ctx, acct, "esm", SendInput{Body: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	wait := time.Second
	msgs, err := a.Receive(ctx, acct, "esm", ReceiveInput{Max: 10, Wait: &wait})
	if err != nil || len(msgs) != 10 {
		t.Fatalf("receive: %d %v", len(msgs), err)
	}
	var keep Message
	var done []Message
	for _, m := range msgs {
		if m.Body == "7" {
			keep = m
			continue
		}
		done = append(done, m)
	}
	if err := a.DeleteReceived(ctx, acct, "esm", done); err != nil {
		t.Fatal(err)
	}
	stored := func() uint64 {
		info, err := a.stream.Info(ctx, jetstream.WithSubjectFilter(queueSubject+acct+".esm"))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[queueSubject+acct+".esm"]
	}
	deadline := time.Now().Add(10 * time.Second)
	for stored() > 3 && time.Now().Before(deadline) { // 7, 8, 9 stay: the floor stops below 7
		time.Sleep(50 * time.Millisecond)
	}
	if n := stored(); n != 3 {
		t.Fatalf("%d messages stored after acknowledging 0-6 and 8-9, want 3 (7 and those above the ack floor)", n)
	}
	again, err := a.Receive(ctx, acct, "esm", ReceiveInput{Max: 10, Wait: &wait})
	for err == nil && len(again) == 0 && time.Now().Before(deadline) {
		again, err = a.Receive(ctx, acct, "esm", ReceiveInput{Max: 10, Wait: &wait})
	}
	if err != nil || len(again) != 1 || again[0].Body != "7" || again[0].MessageID != keep.MessageID {
		t.Fatalf("after the visibility timeout: %+v %v", again, err)
	}
	if err := a.DeleteReceived(ctx, acct, "esm", again); err != nil {
		t.Fatal(err)
	}
	for stored() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := stored(); n != 0 {
		t.Fatalf("%d messages stored after acknowledging all", n)
	}
}
