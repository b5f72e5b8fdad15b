package asyncq

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestAtomicFanOut: the embedded backbone takes atomic batches on
// FLINT_ASYNC; a batch is stored whole, each event under its own subject
// and Nats-Msg-Id; a batch holding an id already stored (a redone
// dispatch) is refused whole, so the caller's one-by-one publishes, which
// de-duplication stores at most once, decide.
func TestAtomicFanOut(t *testing.T) {
	e := newEnvStart(t, nil, false)
	if !e.svc.atomic {
		t.Fatal("the embedded backbone should take atomic batches on " + StreamName)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mk := func(fn, id string) *nats.Msg {
		m := nats.NewMsg(fnKey{testAccount, fn}.subject())
		m.Data = []byte(`{"requestId":"` + id + `"}`)
		m.Header.Set(jetstream.MsgIDHeader, id)
		return m
	}
	msgs := func() uint64 {
		info, err := e.svc.stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	if err := e.svc.publishAtomic(ctx, []*nats.Msg{mk("a", "id-1"), mk("b", "id-2"), mk("a", "id-3")}); err != nil {
		t.Fatalf("atomic publish: %v", err)
	}
	if n := msgs(); n != 3 {
		t.Fatalf("stream holds %d messages, want 3", n)
	}
	got, err := e.svc.stream.GetLastMsgForSubject(ctx, fnKey{testAccount, "b"}.subject())
	if err != nil || got.Header.Get(jetstream.MsgIDHeader) != "id-2" {
		t.Fatalf("event b: %+v, %v", got, err)
	}
	// A batch with an id already stored: refused, nothing of it stored.
	if err := e.svc.publishAtomic(ctx, []*nats.Msg{mk("c", "id-4"), mk("a", "id-1")}); err == nil {
		t.Fatal("a batch repeating a stored id was accepted")
	}
	if n := msgs(); n != 3 {
		t.Fatalf("after the refused batch the stream holds %d messages, want 3", n)
	}
	// One by one, as dispatch falls back: the new one stored, the
	// repeated one dropped by de-duplication.
	for _, m := range []*nats.Msg{mk("c", "id-4"), mk("a", "id-1")} {
		if _, err := e.bb.JetStream().PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if n := msgs(); n != 4 {
		t.Fatalf("after the fallback the stream holds %d messages, want 4", n)
	}
}
