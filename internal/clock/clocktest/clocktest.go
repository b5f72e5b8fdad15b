// Package clocktest provides a fake clock.Clock that only moves when a
// test advances it, so that tests prove timing behaviour (a keep-alive
// expiring, a batch waiting for its delay) without sleeping. It is meant
// for tests only.
package clocktest

import (
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/clock"
)

// Fake is a clock.Clock whose time stands still until Advance or Set moves
// it; timers fire, in order, as it passes their deadlines. Safe for
// concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*timer      // armed timers, unordered
	changed chan struct{} // closed and replaced whenever timers changes
}

var _ clock.Clock = (*Fake)(nil)

// New returns a Fake standing at start.
func New(start time.Time) *Fake {
	return &Fake{now: start, changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer that fires when the fake time reaches d from
// now (at once if d <= 0).
func (f *Fake) NewTimer(d time.Duration) clock.Timer {
	t := &timer{f: f, c: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// Advance moves the fake time forward by d, firing every timer whose
// deadline it reaches, earliest first.
func (f *Fake) Advance(d time.Duration) { f.Set(f.Now().Add(d)) }

// Set moves the fake time to now (never backwards), firing every timer
// whose deadline it reaches, earliest first.
func (f *Fake) Set(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Before(f.now) {
		return
	}
	f.now = now
	sort.Slice(f.timers, func(i, j int) bool { return f.timers[i].when.Before(f.timers[j].when) })
	kept := f.timers[:0]
	fired := false
	for _, t := range f.timers {
		if t.when.After(now) {
			kept = append(kept, t)
			continue
		}
		fired = true
		select {
		case t.c <- t.when:
		default: // an unread earlier value: as a dropped tick
		}
	}
	clear(f.timers[len(kept):])
	f.timers = kept
	if fired {
		f.notifyLocked()
	}
}

// Timers returns how many timers are armed.
func (f *Fake) Timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// WaitTimers waits until exactly n timers are armed: the way a test knows
// that the code under test has reached the point where it waits for time
// to pass. It fails t if that does not happen within 10 s of real time.
func (f *Fake) WaitTimers(t testing.TB, n int) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		got, changed := len(f.timers), f.changed
		f.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("clocktest: %d timers armed after 10s, want %d", got, n)
		}
	}
}

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// removeLocked disarms t and reports whether it was armed.
func (f *Fake) removeLocked(t *timer) bool {
	for i, x := range f.timers {
		if x == t {
			f.timers = append(f.timers[:i], f.timers[i+1:]...)
			f.notifyLocked()
			return true
		}
	}
	return false
}

type timer struct {
	f    *Fake
	c    chan time.Time
	when time.Time // guarded by f.mu
}

func (t *timer) C() <-chan time.Time { return t.c }

func (t *timer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	armed := t.f.removeLocked(t)
	t.drain()
	return armed
}

func (t *timer) Reset(d time.Duration) bool {
	f := t.f
	f.mu.Lock()
	armed := f.removeLocked(t)
	t.drain()
	t.when = f.now.Add(d)
	f.timers = append(f.timers, t)
	f.notifyLocked()
	f.mu.Unlock()
	if d <= 0 {
		f.Set(f.Now())
	}
	return armed
}

// drain drops a value sent but not received, as Go 1.23's timers do on
// Stop and Reset.
func (t *timer) drain() {
	select {
	case <-t.c:
	default:
	}
}
