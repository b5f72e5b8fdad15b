// Package clock tells the time and makes timers through an interface, so
// that behaviour that depends on time (keep-alive, retry back-off, group
// commit delays) can be driven by a fake clock in tests
// (internal/clock/clocktest) instead of by sleeping.
//
// Components take a Clock in their Config and default to Real.
package clock

import "time"

// Clock tells the time and makes timers. Implementations are safe for
// concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that sends the time on its channel once,
	// d from now, as time.NewTimer does.
	NewTimer(d time.Duration) Timer
}

// Timer is a single event, as *time.Timer. Stop and Reset behave as
// time.Timer's do since Go 1.23: after either, no stale value is received
// from C.
type Timer interface {
	// C delivers the time when the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether the call
	// stopped it (false: it had fired or was stopped already).
	Stop() bool
	// Reset makes the timer fire d from now; it reports whether the
	// timer had been active.
	Reset(d time.Duration) bool
}

// Real is the wall clock.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }
