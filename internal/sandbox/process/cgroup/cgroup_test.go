package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testParent is this test process's cgroup parent, removed when it ends.
var testParent = "flint-cgtest-" + strconv.Itoa(os.Getpid())

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveParent("/sys/fs/cgroup", testParent)
	os.Exit(code)
}

// manager returns a Manager for version v on this host or skips.
func manager(t *testing.T, root string, v Version) *Manager {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("cgroup tests need root")
	}
	m, err := New(Config{Root: root, Parent: testParent, Version: v})
	if err != nil {
		t.Skipf("cgroup %s unusable on this host: %v", v, err)
	}
	return m
}

// eachVersion runs f in a subtest per cgroup version ("v1", "v2") with a
// Manager for it; a version this host does not offer skips.
func eachVersion(t *testing.T, f func(t *testing.T, m *Manager)) {
	for _, tc := range []struct {
		v    Version
		root string
	}{{V1, "/sys/fs/cgroup"}, {V2, v2Root()}} {
		t.Run(tc.v.String(), func(t *testing.T) { f(t, manager(t, tc.root, tc.v)) })
	}
}

// peakFile is the name of the peak memory file on g's cgroup version.
func peakFile(g *Group) string {
	if g.version == V2 {
		return "memory.peak"
	}
	return "memory.max_usage_in_bytes"
}

// startMemoryHog starts a shell that waits until it is a member of g, then
// builds an n-byte string in memory (charging about n bytes to g), prints
// its length and exits. It returns the running shell for the caller to
// Wait on; if the shell cannot be started or added to g it is killed and
// t fails.
func startMemoryHog(t *testing.T, g *Group, n int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "read x; s=$(head -c "+strconv.Itoa(n)+" /dev/zero | tr '\\0' a); echo ${#s}")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	// The shell reads this line only now that it is in g.
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	return cmd
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestV1(t *testing.T) {
	m := manager(t, "/sys/fs/cgroup", V1)
	testLifecycle(t, m, func(g *Group) {
		if got := read(t, filepath.Join(g.memDir, "memory.limit_in_bytes")); got != strconv.Itoa(64<<20) {
			t.Errorf("memory.limit_in_bytes = %s", got)
		}
		if got := read(t, filepath.Join(g.cpuDir, "cpu.cfs_quota_us")); got != "50000" {
			t.Errorf("cpu.cfs_quota_us = %s, want 50000 (half a CPU)", got)
		}
		// SetCPU relies on the kernel's default period being cfsPeriodUs.
		if got := read(t, filepath.Join(g.cpuDir, "cpu.cfs_period_us")); got != strconv.Itoa(cfsPeriodUs) {
			t.Errorf("cpu.cfs_period_us = %s, want %d", got, cfsPeriodUs)
		}
		if got := read(t, filepath.Join(g.dirs[0], "pids.max")); got != "16" {
			t.Errorf("pids.max = %s", got)
		}
	})
}

// TestV2 runs where a unified hierarchy with the memory, pids and cpu
// controllers is available (pure v2 hosts; not hybrid ones whose unified
// mount has no controllers).
func TestV2(t *testing.T) {
	root := "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
		root = "/sys/fs/cgroup/unified"
	}
	m := manager(t, root, V2)
	testLifecycle(t, m, func(g *Group) {
		if got := read(t, filepath.Join(g.memDir, "memory.max")); got != strconv.Itoa(64<<20) {
			t.Errorf("memory.max = %s", got)
		}
		if got := read(t, filepath.Join(g.cpuDir, "cpu.max")); got != "50000 100000" {
			t.Errorf("cpu.max = %s", got)
		}
		if got := read(t, filepath.Join(g.dirs[0], "pids.max")); got != "16" {
			t.Errorf("pids.max = %s", got)
		}
	})
}

func testLifecycle(t *testing.T, m *Manager, checkLimits func(*Group)) {
	id := "cg-" + strconv.Itoa(os.Getpid())
	g, err := m.Create(id, Limits{MemoryBytes: 64 << 20, Pids: 16, CPUMillis: 500})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Destroy(time.Now().Add(5 * time.Second))
	if _, err := m.Create(id, Limits{}); err == nil {
		t.Error("creating the same group twice succeeded")
	}
	checkLimits(g)
	// A process and a setsid grandchild in the group.
	// It forks only once it is in the group (after reading a line).
	cmd := exec.Command("/bin/sh", "-c", "read x; setsid /bin/sleep 600 & exec /bin/sleep 600")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	if err := g.Add(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	stdin.Write([]byte("go\n"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := g.Procs()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group has pids %v, want 2", pids)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st, err := g.Stats(); err != nil || st.MaxMemoryBytes == 0 {
		t.Errorf("Stats() = %+v, %v", st, err)
	}
	if err := g.Destroy(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	waited = true
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Errorf("member exit: %v, want killed", err)
	}
	for _, d := range g.dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survives Destroy", d)
		}
	}
	if err := g.Destroy(time.Now().Add(time.Second)); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

func TestNewFailsClearly(t *testing.T) {
	_, err := New(Config{Root: t.TempDir(), Parent: "flint"})
	if err == nil || !strings.Contains(err.Error(), "no usable cgroup hierarchy") {
		t.Fatalf("New on an empty dir: %v", err)
	}
	for _, c := range []Config{{Root: "rel", Parent: "x"}, {Root: "/x", Parent: "../x"}, {Root: "/x", Parent: "a/b"}, {Root: "/x", Parent: "x", Version: 3}} {
		if c.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
}

func TestCreateRejectsBadIDs(t *testing.T) {
	m := &Manager{impl: &v1{root: t.TempDir(), parent: "p"}}
	for _, id := range []string{"", "..", "a/b", strings.Repeat("x", 65)} {
		if _, err := m.Create(id, Limits{}); err == nil {
			t.Errorf("Create(%q) succeeded", id)
		}
	}
}

func TestParseKey(t *testing.T) {
	const events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n"
	for key, want := range map[string]uint64{"oom_kill": 2, "oom": 3, "max": 12, "absent": 0} {
		if got, err := ParseKey(events, key); err != nil || got != want {
			t.Errorf("ParseKey(%q) = %d, %v; want %d", key, got, err, want)
		}
	}
	if _, err := ParseKey("oom_kill x\n", "oom_kill"); err == nil {
		t.Error("ParseKey accepted a non-number")
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add("oom_kill 1\n", "oom_kill")
	f.Add("under_oom 0\noom_kill 18446744073709551615", "oom_kill")
	f.Fuzz(func(t *testing.T, contents, key string) {
		v, err := ParseKey(contents, key)
		if err != nil && v != 0 {
			t.Fatalf("error %v with value %d", err, v)
		}
		if err == nil && v != 0 && !strings.Contains(contents, key) {
			t.Fatalf("value %d for a key not in the input", v)
		}
	})
}

func TestV1ResetPeak(t *testing.T) {
	m := manager(t, "/sys/fs/cgroup", V1)
	g, err := m.Create("peak-"+strconv.Itoa(os.Getpid()), Limits{MemoryBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Destroy(time.Now().Add(5 * time.Second))
	// Charge ~32 MiB of tmpfs-free anonymous memory to the group: a shell
	// that builds a big string, then exits.
	cmd := startMemoryHog(t, g, 32<<20)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	before, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.ResetPeak(); err != nil {
		t.Fatal(err)
	}
	after, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if before.MaxMemoryBytes < 32<<20 || after.MaxMemoryBytes >= before.MaxMemoryBytes/2 {
		t.Errorf("peak %d before reset, %d after; want >= 32 MiB then much less", before.MaxMemoryBytes, after.MaxMemoryBytes)
	}
}

// TestV1SetMemory raises and lowers a group's limit: memory and
// memory+swap (where the host accounts swap) follow together.
func TestV1SetMemory(t *testing.T) {
	m := manager(t, "/sys/fs/cgroup", V1)
	g, err := m.Create("setmem-"+strconv.Itoa(os.Getpid()), Limits{MemoryBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Destroy(time.Now().Add(5 * time.Second))
	for _, mb := range []int64{256, 32} {
		if err := g.SetMemory(mb << 20); err != nil {
			t.Fatal(err)
		}
		want := strconv.FormatInt(mb<<20, 10)
		if got := read(t, filepath.Join(g.memDir, "memory.limit_in_bytes")); got != want {
			t.Errorf("memory.limit_in_bytes = %s, want %s", got, want)
		}
		if g.memsw {
			if got := read(t, filepath.Join(g.memDir, "memory.memsw.limit_in_bytes")); got != want {
				t.Errorf("memory.memsw.limit_in_bytes = %s, want %s", got, want)
			}
		} else if _, err := os.Stat(filepath.Join(g.memDir, "memory.memsw.limit_in_bytes")); err == nil {
			t.Error("the host accounts swap but the group does not know it")
		}
	}
}
