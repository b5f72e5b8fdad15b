package asyncq

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/clock/clocktest"
	"github.com/flintdev/flint/internal/outputtest"
	"github.com/flintdev/flint/internal/polltest"
)

// TestRetryAndBackoffFollowTheClock runs the service on a fake clock that
// stands still: retries and throttle back-offs are scheduled from it to
// the nanosecond, and an event JetStream hands back before its time is
// declined again and again until the test moves the clock. Nothing waits
// for the delays to pass in real time.
func TestRetryAndBackoffFollowTheClock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktest.New(t0)
	var logs outputtest.Buffer
	e := newEnv(t, func(c *Config) {
		c.Clock = clk
		c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	flaky, busy := e.fns.add("flaky", ""), e.fns.add("busy", "")
	e.inv.set("flaky", &behavior{failTimes: 1})
	e.inv.set("busy", &behavior{throttleTimes: 2})
	const flakyID, busyID = "c10c0000-0000-4000-8000-000000000001", "c10c0000-0000-4000-8000-000000000002"
	e.enqueue(flaky, flakyID, `{}`)
	e.enqueue(busy, busyID, `{}`)
	status := func(id string) *Status {
		st, err := e.svc.Status(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	// declined waits until JetStream has handed back events before their
	// time n more times (each is declined with a log line).
	declined := func(n int) {
		t.Helper()
		want := strings.Count(logs.String(), "redelivered before its retry is due") + n
		polltest.Until(t, 20*time.Second, "events redelivered early to be declined", func() bool {
			return strings.Count(logs.String(), "redelivered before its retry is due") >= want
		})
	}

	// The first attempts: a function error (retry after RetryDelays[0],
	// 20 ms) and a throttle (back-off ThrottleBackoffMin, 10 ms).
	e.waitStatus(flakyID, StateQueued)
	polltest.Until(t, 20*time.Second, "the first attempts", func() bool {
		return status(flakyID).FunctionErrors == 1 && status(busyID).Throttles == 1
	})
	if at := status(flakyID).NextAttemptAt; at == nil || !at.Equal(t0.Add(20*time.Millisecond)) {
		t.Fatalf("retry scheduled for %v, want t0+20ms", at)
	}
	if at := status(busyID).NextAttemptAt; at == nil || !at.Equal(t0.Add(10*time.Millisecond)) {
		t.Fatalf("back-off until %v, want t0+10ms", at)
	}
	declined(4)
	if f, b := len(e.inv.callsOf("flaky")), len(e.inv.callsOf("busy")); f != 1 || b != 1 {
		t.Fatalf("%d and %d calls while the clock stood still, want 1 each", f, b)
	}

	// t0+10ms: the throttled event is due and is throttled again: the
	// back-off doubles. The retry is not due yet.
	clk.Advance(10 * time.Millisecond)
	polltest.Until(t, 20*time.Second, "the second throttle", func() bool { return status(busyID).Throttles == 2 })
	if at := status(busyID).NextAttemptAt; at == nil || !at.Equal(t0.Add(30*time.Millisecond)) {
		t.Fatalf("second back-off until %v, want t0+30ms (10ms later, 20ms)", at)
	}
	declined(4)
	if f := len(e.inv.callsOf("flaky")); f != 1 {
		t.Fatalf("the retry ran %d times before its time", f-1)
	}

	// t0+30ms: both are due and succeed, finishing at that instant.
	clk.Advance(20 * time.Millisecond)
	for id, attempts := range map[string]int{flakyID: 2, busyID: 3} {
		st := e.waitStatus(id, StateSucceeded)
		if st.Attempts != attempts || !st.FinishedAt.Equal(t0.Add(30*time.Millisecond)) || !st.EnqueuedAt.Equal(t0) {
			t.Errorf("%s: %d attempts, enqueued %v, finished %v; want %d attempts, t0 and t0+30ms", id, st.Attempts, st.EnqueuedAt, st.FinishedAt, attempts)
		}
	}
}
