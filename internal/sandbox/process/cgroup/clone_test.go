package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCloneIntoProbe checks the probe against the kernel's version: clone3
// has had CLONE_INTO_CGROUP since Linux 5.7.
func TestCloneIntoProbe(t *testing.T) {
	st, _ := os.ReadFile("/proc/self/status")
	if strings.Contains(string(st), "\nSeccomp:\t2") {
		t.Skip("a seccomp filter may refuse clone3 whatever the kernel")
	}
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var rel []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	f := strings.FieldsFunc(string(rel), func(r rune) bool { return r < '0' || r > '9' })
	if len(f) < 2 {
		t.Fatalf("kernel release %q", rel)
	}
	major, _ := strconv.Atoi(f[0])
	minor, _ := strconv.Atoi(f[1])
	want := major > 5 || major == 5 && minor >= 7
	if got := cloneIntoCgroup(); got != want {
		t.Errorf("kernel %s: CLONE_INTO_CGROUP probe says %v, want %v", rel, got, want)
	}
}

// TestOpenDir starts a process with the descriptor of Group.OpenDir (v2)
// and reads its cgroup as it runs its first instruction; on v1 OpenDir
// refuses.
func TestOpenDir(t *testing.T) {
	eachVersion(t, func(t *testing.T, m *Manager) {
		g, err := m.Create("clone-"+strconv.Itoa(os.Getpid()), Limits{Pids: 16})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Destroy(time.Now().Add(5 * time.Second))
		fd, err := g.OpenDir()
		if m.Version() == V1 {
			if !errors.Is(err, ErrCloneIntoUnsupported) || m.CanCloneInto() {
				t.Fatalf("v1: OpenDir = %d, %v; CanCloneInto = %v", fd, err, m.CanCloneInto())
			}
			return
		}
		if !m.CanCloneInto() {
			t.Skip("no CLONE_INTO_CGROUP on this kernel")
		}
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		cmd := exec.Command("/bin/cat", "/proc/self/cgroup")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(g.dirs[0], m.cfg.Root)
		if got := strings.TrimSpace(string(out)); got != "0::"+rel {
			t.Errorf("process started in %s: /proc/self/cgroup = %q, want 0::%s", g.dirs[0], got, rel)
		}
	})
}
