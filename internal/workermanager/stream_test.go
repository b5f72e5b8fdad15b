package workermanager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/polltest"
)

type recordStream struct {
	mu     sync.Mutex
	starts []string
	data   []byte
}

func (r *recordStream) Start(ct string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts = append(r.starts, ct)
	return nil
}

func (r *recordStream) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.data = append(r.data, p...)
	return len(p), nil
}

func (r *recordStream) snapshot() ([]string, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.starts...), string(r.data)
}

// TestInvokeStreamWithoutStreamer: a sandbox that cannot stream (the fake
// one) is invoked buffered and its answer written to the stream at once;
// once the caller gave up, the stream is never written.
func TestInvokeStreamWithoutStreamer(t *testing.T) {
	w := newWorld(t, worldConfig{})
	fn := testFunction("stream")
	rec := &recordStream{}
	res, err := w.m.InvokeStream(context.Background(), fn, invocation.Request{RequestID: "r1", Payload: []byte(`"hi"`)}, rec)
	starts, data := rec.snapshot()
	if err != nil || len(res.Payload) != 0 || len(starts) != 1 || starts[0] != "application/json" || data != `"hi"` {
		t.Fatalf("InvokeStream: %+v %v; stream %q %q", res, err, starts, data)
	}

	release := make(chan struct{})
	finished := make(chan struct{})
	w.invoke = func(ctx context.Context, sb *fakeSandbox, req invocation.Request) (invocation.Result, error) {
		defer close(finished)
		<-release
		return invocation.Result{RequestID: req.RequestID, Payload: []byte(`"late"`)}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	late := &recordStream{}
	if _, err := w.m.InvokeStream(ctx, fn, invocation.Request{RequestID: "r2"}, late); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller gone: %v", err)
	}
	close(release)
	<-finished
	// The buffered answer is written (or refused) before the sandbox is
	// handed back: once nothing is busy, the attempt has happened.
	polltest.Check(t, 10*time.Second, "the sandbox to be idle again", func() error {
		if st := w.m.Stats(); st.Busy != 0 {
			return fmt.Errorf("%d busy", st.Busy)
		}
		return nil
	})
	if starts, data := late.snapshot(); len(starts) != 0 || data != "" {
		t.Errorf("the stream of a caller that gave up was written: %q %q", starts, data)
	}
}
