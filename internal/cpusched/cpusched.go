// Package cpusched sets the Linux CPU scheduling policy of the whole
// process: flint server runs itself and its sandboxes under SCHED_BATCH
// (docs/warm-path.md, "Scheduling policy").
//
// A warm invocation is a chain of short bursts that wake each other: the
// server writes the event and wakes the runtime, the runtime answers and
// wakes the server, the server answers the client. Under the default
// policy each wake-up may preempt the task that made it in the middle of
// its system call; under SCHED_BATCH the woken task waits until the waker
// blocks or its slice ends (the kernel still shares CPU time fairly, and
// cgroup quotas are unchanged), so each side finishes its burst first.
package cpusched

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxPasses bounds Batch's sweeps over the process's threads: a thread
// started by one not yet switched during a sweep is caught by the next.
const maxPasses = 5

// Batch switches every thread of this process to SCHED_BATCH, keeping
// each one's nice value. Threads started afterwards inherit the policy
// from the thread that starts them, and so do child processes (sandboxes,
// their runtimes). It needs no privilege. It returns an error when a
// thread could not be switched; the threads already switched stay so.
func Batch() error {
	for range maxPasses {
		switched, err := sweep()
		if err != nil {
			return err
		}
		if switched == 0 {
			return nil
		}
	}
	return nil
}

// sweep switches the threads not yet under SCHED_BATCH and counts them.
func sweep() (int, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("cpusched: list threads: %w", err)
	}
	switched := 0
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		attr, err := unix.SchedGetAttr(tid, 0)
		if errors.Is(err, unix.ESRCH) {
			continue // the thread exited
		}
		if err != nil {
			return switched, fmt.Errorf("cpusched: read the policy of thread %d: %w", tid, err)
		}
		if attr.Policy == unix.SCHED_BATCH {
			continue
		}
		if attr.Policy != unix.SCHED_NORMAL {
			continue // a real-time or idle thread someone chose: left alone
		}
		attr.Policy, attr.Priority, attr.Flags = unix.SCHED_BATCH, 0, 0
		if err := unix.SchedSetAttr(tid, attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return switched, fmt.Errorf("cpusched: set SCHED_BATCH on thread %d: %w", tid, err)
		}
		switched++
	}
	return switched, nil
}
