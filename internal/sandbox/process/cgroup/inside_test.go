package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// threadCgroups reads /proc/<pid>/task/<tid>/cgroup (or /proc/<pid>/cgroup
// with tid 0) into controller -> path.
func threadCgroups(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			m[c] = parts[2]
		}
	}
	return m
}

// TestRunInside starts processes from RunInside, concurrently, and checks
// that each is born in its group (it reads its own cgroups with its first
// instruction) while every thread of the test process is back home.
func TestRunInside(t *testing.T) {
	eachVersion(t, func(t *testing.T, m *Manager) {
		if m.Version() == V2 {
			g, err := m.Create("inside-"+strconv.Itoa(os.Getpid()), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Destroy(time.Now().Add(5 * time.Second))
			if m.CanRunInside() || !errors.Is(m.RunInside(g, func() error { return nil }), ErrRunInsideUnsupported) {
				t.Fatal("RunInside works on cgroup v2")
			}
			return
		}
		if !m.CanRunInside() {
			t.Fatal("CanRunInside = false on cgroup v1")
		}
		home := threadCgroups(t, "/proc/self/cgroup")
		const n = 8
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g, err := m.Create("inside-"+strconv.Itoa(os.Getpid())+"-"+strconv.Itoa(i), Limits{MemoryBytes: 64 << 20, Pids: 16})
				if err != nil {
					t.Error(err)
					return
				}
				defer g.Destroy(time.Now().Add(5 * time.Second))
				var out []byte
				err = m.RunInside(g, func() error {
					var err error
					out, err = exec.Command("/bin/cat", "/proc/self/cgroup").Output()
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
				got := map[string]string{}
				for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					parts := strings.SplitN(line, ":", 3)
					for _, c := range strings.Split(parts[1], ",") {
						got[c] = parts[2]
					}
				}
				for i, c := range v1Required {
					want := strings.TrimPrefix(g.dirs[i], filepath.Join(m.cfg.Root, c))
					if got[c] != want {
						t.Errorf("%s: child born in %q, want %q", c, got[c], want)
					}
				}
				if pids, err := g.Procs(); err != nil || len(pids) != 0 {
					t.Errorf("group holds %v (%v) after its only process exited", pids, err)
				}
			}()
		}
		wg.Wait()
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			cg := threadCgroups(t, filepath.Join("/proc/self/task", task.Name(), "cgroup"))
			for _, c := range v1Required {
				if cg[c] != home[c] {
					t.Errorf("thread %s is in %s %s, not back in %s", task.Name(), c, cg[c], home[c])
				}
			}
		}
	})
}

func TestHomePaths(t *testing.T) {
	p, err := homePaths([]byte("9:name=systemd:/\n8:pids:/a\n4:memory:/m/x\n2:cpu,cpuacct:/c\n0::/\n"))
	if err != nil || p["pids"] != "/a" || p["memory"] != "/m/x" || p["cpu"] != "/c" {
		t.Errorf("homePaths = %v, %v", p, err)
	}
	if _, err := homePaths([]byte("0::/\n")); err == nil {
		t.Error("homePaths of a v2-only host succeeded")
	}
}
