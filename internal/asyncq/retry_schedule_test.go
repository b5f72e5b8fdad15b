package asyncq

import (
	"context"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/polltest"
)

// TestRetryDelayKeptAcrossRestart: JetStream forgets a Nak's delay when the
// server restarts and redelivers the event after AckWait; the retry must
// still wait for the NextAttemptAt recorded in its status.
func TestRetryDelayKeptAcrossRestart(t *testing.T) {
	slow := func(c *Config) {
		c.RetryDelays = []time.Duration{3 * time.Second}
		c.AckWait = 500 * time.Millisecond
	}
	e := newEnvStart(t, slow, true)
	fn := e.fns.add("patient", "")
	e.inv.set("patient", &behavior{failTimes: 1})
	const id = "77777777-7777-4777-8777-777777777777"
	e.enqueue(fn, id, `{"n":1}`)
	var waiting *Status
	polltest.Until(t, 10*time.Second, "first attempt failed, retry scheduled", func() bool {
		st, err := e.svc.Status(context.Background(), id)
		if err == nil && st.Status == StateQueued && st.FunctionErrors == 1 && st.NextAttemptAt != nil {
			waiting = st
			return true
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.svc.Close(ctx)
	e.bb.Close()
	bb, err := backbone.Start(backbone.Config{DataDir: e.dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	e.bb = bb
	e.startService(slow, true)

	st := e.waitStatus(id, StateSucceeded)
	calls := e.inv.callsOf("patient")
	if len(calls) != 2 || st.Attempts != 2 {
		t.Fatalf("%d calls, %d attempts; want 2", len(calls), st.Attempts)
	}
	if calls[1].at.Before(*waiting.NextAttemptAt) {
		t.Fatalf("retry ran at %v, %v before it was due at %v", calls[1].at, waiting.NextAttemptAt.Sub(calls[1].at), waiting.NextAttemptAt)
	}
}
