package workermanager

import (
	"time"
)

// runnerIdle is how long a runner waits for another invocation before it
// exits.
const runnerIdle = time.Second

// runners runs invocations on goroutines that are kept for a while after
// one ends. A fresh goroutine per invocation grows its stack (a copy) on
// every call, about 2 µs of CPU; a kept one has grown it already. Idle
// runners exit after runnerIdle, so none outlive a burst for long.
type runners struct {
	work chan func() // unbuffered: a send succeeds only into an idle runner
}

func newRunners() *runners { return &runners{work: make(chan func())} }

// run runs f on an idle runner, or on a new one when none is idle.
func (p *runners) run(f func()) {
	select {
	case p.work <- f:
	default:
		go p.loop(f)
	}
}

func (p *runners) loop(f func()) {
	var t *time.Timer
	for {
		f()
		f = nil // nothing of the last invocation stays reachable
		if t == nil {
			t = time.NewTimer(runnerIdle)
		} else {
			t.Reset(runnerIdle)
		}
		select {
		case f = <-p.work:
		case <-t.C:
			return
		}
	}
}
