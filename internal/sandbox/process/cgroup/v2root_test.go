package cgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestV2RootHoldingProcesses: Flint started in a v2 cgroup that holds
// processes and is not the hierarchy's root (a container's cgroup
// namespace) cannot enable controllers there. With other processes in it,
// New fails naming them; when Flint is alone there (the container's init),
// New moves it into a leaf of its own and works.
func TestV2RootHoldingProcesses(t *testing.T) {
	root := v2Root()
	manager(t, root, V2) // skips where there is no usable v2 hierarchy
	ctr := filepath.Join(root, testParent+"-ctr")
	if err := os.Mkdir(ctr, 0o755); err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	t.Cleanup(func() {
		// Back to the root, then remove what the test made, deepest first.
		if err := writeFile(filepath.Join(root, "cgroup.procs"), self); err != nil {
			t.Errorf("move the test back to %s: %v", root, err)
		}
		for _, d := range []string{"p", "p.server", ""} {
			if err := rmdirRetry(filepath.Join(ctr, d), time.Now().Add(5*time.Second)); err != nil {
				t.Error(err)
			}
		}
	})

	other := exec.Command("/bin/sleep", "600")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(other.Process.Pid)
	if err := writeFile(filepath.Join(ctr, "cgroup.procs"), pid); err != nil {
		other.Process.Kill()
		other.Wait()
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(ctr, "cgroup.procs"), self); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Root: ctr, Parent: "p", Version: V2})
	other.Process.Kill()
	other.Wait()
	if err == nil || !strings.Contains(err.Error(), "holds processes "+pid+" besides Flint") {
		t.Fatalf("New beside another process: %v; want it named", err)
	}

	m, err := New(Config{Root: ctr, Parent: "p", Version: V2})
	if err != nil {
		t.Fatalf("New as the only process of %s: %v", ctr, err)
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if want := "/" + testParent + "-ctr/p.server"; !strings.Contains(string(cg), want) {
		t.Errorf("/proc/self/cgroup = %q, want the process in %s", cg, want)
	}
	g, err := m.Create("in-ctr", Limits{MemoryBytes: 64 << 20, Pids: 16, CPUMillis: 500})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(g.memDir, "memory.max")); got != strconv.Itoa(64<<20) {
		t.Errorf("memory.max = %s", got)
	}
	if err := g.Destroy(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
}
