package cpusched

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// policyOf reads the scheduling policy of thread or process id from
// /proc (field 41 of stat).
func policyOf(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
	p, err := strconv.Atoi(fields[41-3])
	if err != nil {
		t.Fatalf("%s: policy field %q: %v", path, fields[41-3], err)
	}
	return p
}

// TestBatch: every thread is switched, threads started afterwards and
// child processes inherit the policy, and a second call changes nothing.
func TestBatch(t *testing.T) {
	if err := Batch(); err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if p := policyOf(t, "/proc/self/task/"+task.Name()+"/stat"); p != unix.SCHED_BATCH {
			t.Errorf("thread %s: policy %d, want SCHED_BATCH (%d)", task.Name(), p, unix.SCHED_BATCH)
		}
	}

	// A thread the runtime starts now (a locked goroutine holds its
	// thread, so the next one needs a new one).
	const n = 4
	ready, release := make(chan int), make(chan struct{})
	for range n {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			ready <- unix.Gettid()
			<-release
		}()
	}
	for range n {
		tid := <-ready
		if p := policyOf(t, "/proc/self/task/"+strconv.Itoa(tid)+"/stat"); p != unix.SCHED_BATCH {
			t.Errorf("new thread %d: policy %d, want SCHED_BATCH", tid, p)
		}
	}
	close(release)

	out, err := exec.Command("sh", "-c", "cat /proc/$$/stat").Output()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "stat")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(out); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if p := policyOf(t, f.Name()); p != unix.SCHED_BATCH {
		t.Errorf("child process: policy %d, want SCHED_BATCH", p)
	}

	if switched, err := sweep(); err != nil || switched != 0 {
		t.Errorf("second sweep: switched %d threads, err %v; want none", switched, err)
	}
}
