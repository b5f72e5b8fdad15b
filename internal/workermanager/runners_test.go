package workermanager

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestRunners checks that runners run every task, even when all are busy,
// reuse an idle runner, and exit after runnerIdle.
func TestRunners(t *testing.T) {
	base := runtime.NumGoroutine()
	p := newRunners()
	const n = 8
	release := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	for range n { // all busy at once: each needs a runner of its own
		p.run(func() {
			started.Done()
			<-release
			done.Done()
		})
	}
	started.Wait()
	close(release)
	done.Wait()
	// Idle runners take the next tasks: no more goroutines than before.
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := runtime.NumGoroutine()
		ran := make(chan struct{})
		p.run(func() { close(ran) })
		<-ran
		if runtime.NumGoroutine() <= before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a task after a burst started a goroutine (%d, was %d)", runtime.NumGoroutine(), before)
		}
		time.Sleep(time.Millisecond) // the runners were still on their way back
	}
	// Idle runners exit.
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines %s after the last task, want %d", runtime.NumGoroutine(), runnerIdle, base)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
