package process_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process"
	"golang.org/x/sys/unix"
)

// TestCPUAffinity: a sandbox runs on one CPU per 1769 MB (rounded up, at
// most the host's), the least used at its creation, whether created or
// claimed; its CPUs are free again once it is gone; with ShareCPUs it
// runs on all of them.
func TestCPUAffinity(t *testing.T) {
	var host unix.CPUSet
	if err := unix.SchedGetaffinity(0, &host); err != nil {
		t.Fatal(err)
	}
	ncpu := host.Count()
	d := testDriver(t)
	t.Cleanup(func() { d.Close(context.Background()) })
	n := 0
	start := func(mb int, claim bool) (sandbox.Sandbox, string) {
		t.Helper()
		n++
		sp := spec(t, "cpus-"+strconv.Itoa(os.Getpid())+"-"+strconv.Itoa(n), "/bin/sleep", "600")
		sp.MemoryMB = mb
		var sb sandbox.Sandbox
		var err error
		if claim {
			var pr sandbox.Prepared
			if pr, err = d.Prepare(context.Background()); err == nil {
				sb, err = pr.Claim(context.Background(), sp)
			}
		} else {
			sb, err = d.Create(context.Background(), sp)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Destroy(context.Background()) })
		return sb, cpusOf(t, sb)
	}
	a, cpuA := start(1024, false)
	if got := countCPUs(cpuA); got != 1 {
		t.Fatalf("1024 MB sandbox runs on CPUs %q, want one", cpuA)
	}
	if ncpu < 2 {
		t.Skipf("one CPU: nothing more to tell apart")
	}
	_, cpuB := start(1024, true)
	if countCPUs(cpuB) != 1 || cpuB == cpuA {
		t.Errorf("second 1024 MB sandbox (claimed) on CPUs %q, first on %q: want another single CPU", cpuB, cpuA)
	}
	_, cpuC := start(3538, false)
	if got := countCPUs(cpuC); got != 2 {
		t.Errorf("3538 MB sandbox (2 vCPUs) on CPUs %q, want two", cpuC)
	}
	_, cpuBig := start(10240, false)
	if got := countCPUs(cpuBig); got != min(ncpu, 6) {
		t.Errorf("10240 MB sandbox on CPUs %q, want %d", cpuBig, min(ncpu, 6))
	}
	// A's CPU is the least used once A is gone.
	if err := a.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, cpuD := start(128, false); cpuD != cpuA && ncpu == 2 {
		t.Errorf("after A left, a new sandbox runs on %q, want A's %q", cpuD, cpuA)
	}

	shared := newDriver(t, func(c *process.Config) { c.ShareCPUs = true })
	t.Cleanup(func() { shared.Close(context.Background()) })
	sp := spec(t, "cpus-shared-"+strconv.Itoa(os.Getpid()), "/bin/sleep", "600")
	sb, err := shared.Create(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.Background())
	if got := countCPUs(cpusOf(t, sb)); got != ncpu {
		t.Errorf("ShareCPUs: sandbox on %d CPUs, want all %d", got, ncpu)
	}
}

// cpusOf is the runtime's Cpus_allowed_list, once it has exec'd.
func cpusOf(t *testing.T, sb sandbox.Sandbox) string {
	t.Helper()
	pid := sb.(*process.Sandbox).Pid()
	deadline := time.Now().Add(10 * time.Second)
	for {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if string(comm) == "sleep\n" {
			return statusField(pid, "Cpus_allowed_list")
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox runtime is %q, not sleep", comm)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countCPUs counts the CPUs of a Cpus_allowed_list ("0", "0-1", "0,2-3").
func countCPUs(list string) int {
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, found := strings.Cut(part, "-")
		a, _ := strconv.Atoi(lo)
		b := a
		if found {
			b, _ = strconv.Atoi(hi)
		}
		n += b - a + 1
	}
	return n
}
