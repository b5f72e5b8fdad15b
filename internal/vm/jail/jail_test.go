package jail_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/polltest"
	"github.com/flintdev/flint/internal/vm/initramfs"
	"github.com/flintdev/flint/internal/vm/jail"
)

func TestMain(m *testing.M) {
	jail.MaybeRun()
	os.Exit(m.Run())
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the jail needs root (namespaces, mounts, setuid)")
	}
}

// sleeperSpec jails /bin/sleep with its libraries, a writable directory
// at /vm and /dev/null.
func sleeperSpec(t testing.TB) (jail.Spec, string) {
	return programSpec(t, "/bin/sleep", "sleep", "600")
}

// programSpec jails the program path (with its libraries) run with args,
// a writable directory at /vm and /dev/null.
func programSpec(t testing.TB, path string, args ...string) (jail.Spec, string) {
	t.Helper()
	b := initramfs.New()
	if err := b.AddHostProgram(path); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	vm := filepath.Join(dir, "vm")
	for _, d := range []string{root, vm} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s := jail.Spec{
		Root: root, UID: 64990, GID: 64991, Path: path, Args: args,
		Binds:   []jail.Bind{{Src: vm, Dst: "/vm", Writable: true}},
		Devices: []jail.Device{{Name: "null", Major: 1, Minor: 3}},
		NoFile:  256,
	}
	if err := s.AddTree(b); err != nil {
		t.Fatal(err)
	}
	return s, vm
}

// start runs s through the helper (this test binary) and waits until the
// program runs (its uid changed).
func start(t *testing.T, s jail.Spec) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command("/nonexistent")
	cmd.Stderr = &stderr
	j, err := jail.Prepare(cmd, "/proc/self/exe", s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close) // the program runs only while the caller's end is open
	err = cmd.Start()
	j.Started()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := j.Release(); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	return cmd, &stderr
}

func procFile(pid int, name string) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + name)
	return string(b)
}

func statusField(status, key string) string {
	for _, l := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == key {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// TestConfined: the jailed program runs as its own uid and gid with no
// capabilities, no_new_privs, no core dumps, an empty environment, only
// fds 0-2 (not a descriptor the caller leaked), in namespaces of its own,
// and sees a read-only root holding only what the Spec lists.
func TestConfined(t *testing.T) {
	requireRoot(t)
	s, vm := sleeperSpec(t)
	// A descriptor the caller leaks by mistake (no close-on-exec).
	leak, err := syscall.Open("/etc/hostname", syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(leak)
	t.Setenv("FLINT_JAIL_SECRET", "leaked")
	cmd, stderr := start(t, s)
	pid := cmd.Process.Pid
	if !polltest.Wait(10*time.Second, func() bool {
		return statusField(procFile(pid, "status"), "Name") == "sleep"
	}) {
		t.Fatalf("the program never ran: status %q, stderr %q", procFile(pid, "status"), stderr)
	}
	st := procFile(pid, "status")
	for k, want := range map[string]string{
		"Gid": "64991 64991 64991 64991", "Groups": "", "NoNewPrivs": "1",
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
	} {
		if got := statusField(st, k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if env := procFile(pid, "environ"); env != "" {
		t.Errorf("environment %q, want empty", env)
	}
	ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	var fds []string
	for _, e := range ents {
		fds = append(fds, e.Name())
	}
	if !slices.Equal(fds, []string{"0", "1", "2"}) {
		t.Errorf("descriptors %v, want 0 1 2", fds)
	}
	limits := procFile(pid, "limits")
	if !strings.Contains(limits, "Max core file size        0                    0") ||
		!strings.Contains(limits, "Max open files            256                  256") {
		t.Errorf("limits:\n%s", limits)
	}
	for _, ns := range []string{"mnt", "pid", "net", "ipc", "uts", "cgroup"} {
		mine, _ := os.Readlink("/proc/self/ns/" + ns)
		its, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/" + ns)
		if its == "" || its == mine {
			t.Errorf("%s namespace %q: want its own (the caller's is %q)", ns, its, mine)
		}
	}
	// Mounts: the read-only root, /dev, and one bind per Spec entry.
	var points []string
	for _, l := range strings.Split(strings.TrimSpace(procFile(pid, "mountinfo")), "\n") {
		f := strings.Fields(l)
		point, opts := f[4], f[5]
		points = append(points, point)
		switch {
		case point == "/dev":
			if !strings.HasPrefix(opts, "ro,nosuid,noexec") {
				t.Errorf("/dev mounted %s, want ro,nosuid,noexec", opts)
			}
		case point == "/vm":
			if !strings.HasPrefix(opts, "rw,nosuid,nodev,noexec") {
				t.Errorf("/vm mounted %s, want rw,nosuid,nodev,noexec", opts)
			}
		case !strings.HasPrefix(opts, "ro,nosuid,nodev"):
			t.Errorf("%s mounted %s, want ro,nosuid,nodev", point, opts)
		}
	}
	want := []string{"/", "/dev", "/vm"}
	for _, b := range s.Binds {
		if b.Dst != "/vm" {
			want = append(want, b.Dst)
		}
	}
	slices.Sort(points)
	slices.Sort(want)
	if !slices.Equal(points, want) {
		t.Errorf("mounts %v, want %v", points, want)
	}
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	for _, p := range []string{"/etc", "/proc", "/sys", "/home", "/root", "/tmp", "/usr/bin/env"} {
		if _, err := os.Lstat(root + p); err == nil {
			t.Errorf("%s is visible in the jail", p)
		}
	}
	if _, err := os.Stat(root + "/dev/null"); err != nil {
		t.Errorf("/dev/null: %v", err)
	}
	if err := os.WriteFile(filepath.Join(vm, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(root + "/vm/x"); err != nil || string(b) != "x" {
		t.Errorf("/vm is not the host directory: %q, %v", b, err)
	}
}

// TestPassFiles: the caller's ExtraFiles reach the program as fds 3 and
// up, and nothing else does.
func TestPassFiles(t *testing.T) {
	requireRoot(t)
	s, _ := sleeperSpec(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var stderr bytes.Buffer
	cmd := exec.Command("/nonexistent")
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{r, w}
	j, err := jail.Prepare(cmd, "/proc/self/exe", s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	err = cmd.Start()
	j.Started()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := j.Release(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if !polltest.Wait(10*time.Second, func() bool { return statusField(procFile(pid, "status"), "Name") == "sleep" }) {
		t.Fatalf("the program never ran: %s", stderr.String())
	}
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	for fd, f := range map[string]*os.File{"3": r, "4": w} {
		got, _ := os.Readlink(fdDir + fd)
		want, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
		if got == "" || got != want {
			t.Errorf("fd %s -> %q, want %q", fd, got, want)
		}
	}
	ents, _ := os.ReadDir(fdDir)
	if len(ents) != 5 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("descriptors %v, want 0-4", names)
	}
}

// TestHelperFailure: a Spec the helper cannot build ends it with status 125
// and a message naming the step, before the program runs.
func TestHelperFailure(t *testing.T) {
	requireRoot(t)
	s, _ := sleeperSpec(t)
	s.Binds = append(s.Binds, jail.Bind{Src: "/nonexistent-flint-jail", Dst: "/x"})
	cmd, stderr := start(t, s)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 125 {
		t.Fatalf("exit %v, want status 125", err)
	}
	if !strings.Contains(stderr.String(), "flint vmm jail: root: bind: ") {
		t.Errorf("stderr %q", stderr)
	}
}

// TestRefusesRoot: a Spec with uid or gid 0 is refused before anything
// starts.
func TestRefusesRoot(t *testing.T) {
	s := jail.Spec{Root: "/r", Path: "/bin/true", Args: []string{"true"}, UID: 0, GID: 5}
	if _, err := jail.Prepare(exec.Command("/bin/true"), "/proc/self/exe", s); err == nil {
		t.Error("Prepare accepted uid 0")
	}
}
