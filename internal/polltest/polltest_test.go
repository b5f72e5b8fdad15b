package polltest

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a TB that records the failure instead of stopping.
type recorder struct{ failed string }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestUntilWaitsForAConditionThatBecomesTrue(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			time.Sleep(time.Millisecond)
			n.Add(1)
		}
	}()
	var r recorder
	Until(&r, 10*time.Second, "three ticks", func() bool { return n.Load() == 3 })
	if r.failed != "" {
		t.Fatalf("failed: %s", r.failed)
	}
}

func TestCheckReportsWhatWasAwaitedAndTheLastError(t *testing.T) {
	calls := 0
	var r recorder
	Check(&r, 20*time.Millisecond, "the answer", func() error {
		calls++
		return fmt.Errorf("look %d: not yet", calls)
	})
	if calls < 2 {
		t.Errorf("f called %d times in 20ms, want it polled", calls)
	}
	want := fmt.Sprintf("waiting for the answer: look %d: not yet", calls)
	if !strings.Contains(r.failed, want) {
		t.Errorf("failure %q does not contain %q", r.failed, want)
	}
}

func TestUntilReportsWhatWasAwaited(t *testing.T) {
	var r recorder
	Until(&r, 0, "the impossible", func() bool { return false })
	if !strings.Contains(r.failed, "waiting for the impossible") {
		t.Errorf("failure %q does not name what was awaited", r.failed)
	}
}

func TestPollLooksAtLeastOnce(t *testing.T) {
	calls := 0
	if err := Poll(0, func() error { calls++; return nil }); err != nil || calls != 1 {
		t.Fatalf("Poll(0) = %v after %d calls, want nil after 1", err, calls)
	}
	errNo := errors.New("no")
	if err := Poll(-time.Second, func() error { return errNo }); err != errNo {
		t.Fatalf("Poll = %v, want the last error", err)
	}
}
