package jsretry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/natstest"
)

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{nats.ErrNoResponders, true},
		{fmt.Errorf("keystore: put: %w", jetstream.ErrNoStreamResponse), true},
		{context.DeadlineExceeded, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: jetstream.JSErrCodeJetStreamNotEnabledForAccount}, false},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamNameInUse}, false},
		{&jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement, peer offline"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement, insufficient storage"}, false},
		{jetstream.ErrKeyExists, false},
		{context.Canceled, false},
	} {
		if got := Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestDoRetriesTransientOnly(t *testing.T) {
	calls := 0
	err := Do(context.Background(), nil, "test", func(ctx context.Context) error {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("attempt without a deadline")
		}
		if calls < 3 {
			return nats.ErrNoResponders
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Do = %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	bad := errors.New("bad config")
	if err := Do(context.Background(), nil, "test", func(context.Context) error { calls++; return bad }); !errors.Is(err, bad) || calls != 1 {
		t.Fatalf("Do = %v after %d calls, want the error after 1", err, calls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = Do(ctx, nil, "test", func(context.Context) error { return nats.ErrNoResponders })
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("Do past its ctx = %v, want the last error wrapped", err)
	}
}

// TestYoungCluster opens R3 buckets and a stream, and writes to them at
// once, on a 3-node cluster that has just elected its meta leader: what a
// cluster node does as it starts. Every call succeeds (retried when the
// cluster was not ready), and after Settle calls go straight through.
func TestYoungCluster(t *testing.T) {
	c := natstest.Start(t, natstest.Config{Nodes: 3})
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	raw, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := WaitReady(ctx, raw, nil); err != nil {
		t.Fatal(err)
	}
	js := Starting(raw, nil)
	for i := range 4 {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: fmt.Sprintf("young-%d", i), Replicas: 3})
		if err != nil {
			t.Fatalf("bucket %d: %v", i, err)
		}
		if err := Do(ctx, nil, "first put", func(ctx context.Context) error {
			_, err := kv.Put(ctx, "k", []byte("v"))
			return err
		}); err != nil {
			t.Fatalf("first put to bucket %d: %v", i, err)
		}
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "YOUNG", Subjects: []string{"young.>"}, Replicas: 3})
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c"}); err != nil {
		t.Fatalf("consumer: %v", err)
	}
	js.Settle()
	if _, err := js.Stream(ctx, "MISSING"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("Stream(MISSING) = %v, want ErrStreamNotFound", err)
	}
}
