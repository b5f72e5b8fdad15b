package asyncq

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/invocation"
)

// BenchmarkEnqueue measures the accept rate of Enqueue (what gates an
// InvocationType=Event 202) with 16 concurrent callers on a real embedded
// backbone (file storage, sync_always: every stored message is fsynced
// before its ack). "accept" runs no dispatcher or pollers, so only
// accepting is measured; "running" starts the service, so batches are
// dispatched and events run (instantly) while accepting goes on.
//
//	go test -run '^$' -bench Enqueue -benchtime 5s ./internal/asyncq
func BenchmarkEnqueue(b *testing.B) {
	b.Run("accept", func(b *testing.B) { benchEnqueue(b, false) })
	b.Run("running", func(b *testing.B) { benchEnqueue(b, true) })
}

func benchEnqueue(b *testing.B, start bool) {
	bb, err := backbone.Start(backbone.Config{DataDir: b.TempDir(), Port: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer bb.Close()
	fns := &fakeFunctions{}
	fn := fns.add("bench", "")
	svc, err := New(Config{
		JetStream: bb.JetStream(), Invoker: newFakeInvoker(), Functions: fns,
		DefaultAccount: testAccount, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	if start {
		if err := svc.Start(); err != nil {
			b.Fatal(err)
		}
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = svc.Close(ctx)
	}()
	payload := []byte(`{"bench":true,"pad":"0123456789012345678901234567890123456789"}`)
	ctx := context.Background()
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0))) // 16 callers
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := svc.Enqueue(ctx, fn, invocation.Request{Payload: payload}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
