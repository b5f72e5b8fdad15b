package clocktest

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func fired(c <-chan time.Time) (time.Time, bool) {
	select {
	case v := <-c:
		return v, true
	default:
		return time.Time{}, false
	}
}

func TestTimersFireWhenTheirDeadlineIsReached(t *testing.T) {
	f := New(t0)
	a, b := f.NewTimer(time.Second), f.NewTimer(3*time.Second)
	f.Advance(999 * time.Millisecond)
	if _, ok := fired(a.C()); ok {
		t.Fatal("fired before its deadline")
	}
	f.Advance(time.Millisecond)
	if v, ok := fired(a.C()); !ok || !v.Equal(t0.Add(time.Second)) {
		t.Fatalf("at its deadline: %v %v, want the deadline", v, ok)
	}
	if _, ok := fired(b.C()); ok || f.Timers() != 1 {
		t.Fatalf("the later timer fired, or %d armed (want 1)", f.Timers())
	}
	if b.Stop() != true || b.Stop() != false {
		t.Fatal("Stop reports whether it stopped the timer")
	}
	f.Advance(time.Hour)
	if _, ok := fired(b.C()); ok {
		t.Fatal("a stopped timer fired")
	}
	if a.Reset(time.Minute) {
		t.Fatal("Reset of a fired timer reports it active")
	}
	f.Advance(time.Minute)
	if _, ok := fired(a.C()); !ok {
		t.Fatal("a reset timer did not fire")
	}
	if !f.Now().Equal(t0.Add(time.Second + time.Hour + time.Minute)) {
		t.Fatalf("Now %v", f.Now())
	}
}

func TestResetDropsAnUnreadValue(t *testing.T) {
	f := New(t0)
	a := f.NewTimer(0)
	if a.Reset(time.Second) {
		t.Fatal("fired timer reported active")
	}
	if _, ok := fired(a.C()); ok {
		t.Fatal("stale value after Reset")
	}
}

func TestWaitTimersSeesAGoroutineArmAndFire(t *testing.T) {
	f := New(t0)
	done := make(chan struct{})
	go func() {
		<-f.NewTimer(time.Minute).C()
		close(done)
	}()
	f.WaitTimers(t, 1) // the goroutine waits for time to pass
	f.Advance(time.Minute)
	<-done
	f.WaitTimers(t, 0)
}
