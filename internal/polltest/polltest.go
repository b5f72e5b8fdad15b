// Package polltest waits in tests for something that happens
// asynchronously: it polls a condition until a deadline instead of sleeping
// a guessed time, and when the deadline passes it says what was awaited and
// how things stood at the last look (nats-server's checkFor). It is meant for
// tests only.
//
// Polling starts at once and backs off from 1 ms to at most 50 ms between
// looks, so a condition that is already true costs nothing and a slow one
// does not busy-loop a shared machine.
package polltest

import "time"

// TB is the part of testing.TB the helpers use.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

const (
	firstWait = time.Millisecond
	maxWait   = 50 * time.Millisecond
)

// Check polls f until it returns nil. If d passes first it fails t with
// Fatalf, naming what was awaited and f's last error. It must be called
// from the test's own goroutine, as Fatalf must.
func Check(t TB, d time.Duration, what string, f func() error) {
	t.Helper()
	if err := Poll(d, f); err != nil {
		t.Fatalf("timed out after %v waiting for %s: %v", d, what, err)
	}
}

// Until polls cond until it holds. If d passes first it fails t with
// Fatalf, naming what was awaited. It must be called from the test's own
// goroutine, as Fatalf must.
func Until(t TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Wait(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// Poll polls f until it returns nil or d passes, and returns nil or f's
// last error. It fails nothing: it is for conditions a test hopes for
// rather than requires, and for callers that report in their own words.
// f is called at least once, even when d is not positive.
func Poll(d time.Duration, f func() error) error {
	var err error
	Wait(d, func() bool { err = f(); return err == nil })
	return err
}

// Wait polls cond until it holds or d passes and reports whether it held.
// cond is called at least once, even when d is not positive.
func Wait(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	wait := firstWait
	for {
		if cond() {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(min(wait, time.Until(deadline)))
		wait = min(2*wait, maxWait)
	}
}
