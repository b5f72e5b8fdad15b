package microvm_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/outputtest"
	"github.com/flintdev/flint/internal/polltest"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/microvm"
	"github.com/flintdev/flint/internal/sandbox/sandboxtest"
	"github.com/flintdev/flint/internal/vm/jail"
	"github.com/flintdev/flint/internal/vm/kernel"
	"github.com/flintdev/flint/internal/vm/qemu"
	"github.com/flintdev/flint/internal/vm/vmtest"
)

// newDriver builds the guest init and a driver that runs one VM at a time
// (the development machine is shared and has two cores). It skips when
// QEMU or the kernel cannot be had.
func newDriver(t testing.TB) *microvm.Driver { return newDriverWith(t, nil) }

// newDriverWith is newDriver with the configuration changed by mod.
func newDriverWith(t testing.TB, mod func(*microvm.Config)) *microvm.Driver {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: boots microVMs")
	}
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Skipf("QEMU is not installed (apt-get install qemu-system-x86): %v", err)
	}
	vmtest.Lock(t) // one VM-booting test binary at a time on the machine
	k, err := kernel.Fetch(context.Background(), kernel.Config{CacheDir: kernel.DefaultCacheDir()})
	if err != nil {
		t.Skipf("no guest kernel: %v", err)
	}
	dir := t.TempDir()
	init := filepath.Join(dir, "flint-vm-init")
	gobuildtest.Build(t, "github.com/flintdev/flint/cmd/flint-vm-init", init)
	cfg := microvm.Config{Kernel: k, InitPath: init, StateDir: filepath.Join(dir, "state"), MaxVMs: 1,
		ImageDir: sharedImageDir(t)}
	if mod != nil {
		mod(&cfg)
	}
	d, err := microvm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	t.Logf("guest kernel %s, accelerator %s", k.Release, d.Accel())
	return d
}

var imageDir struct {
	once sync.Once
	dir  string
	err  error
}

// sharedImageDir is the guest image directory every driver of this test
// binary shares: the root image is built once, and a snapshot saved by one
// test's first boot serves the cold starts of the next tests (so that the
// conformance suite runs on restored guests). TestMain removes it.
func sharedImageDir(t testing.TB) string {
	imageDir.once.Do(func() {
		imageDir.dir, imageDir.err = os.MkdirTemp("", "flint-microvm-image-")
	})
	if imageDir.err != nil {
		t.Fatal(imageDir.err)
	}
	return filepath.Join(imageDir.dir, "image")
}

func TestMain(m *testing.M) {
	jail.MaybeRun() // the driver re-executes this binary to jail QEMU
	code := m.Run()
	if imageDir.dir != "" {
		os.RemoveAll(imageDir.dir)
	}
	os.Exit(code)
}

// TestGuestKernel: the runtime runs on the guest's own kernel, with the
// code read-only at /var/task, and its output comes back; QEMU runs as a
// VMM user, and Destroy ends it.
func TestGuestKernel(t *testing.T) {
	d := newDriver(t)
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "bootstrap"), []byte("#!/bin/sh\necho kernel $(uname -r)\necho cwd $(pwd) >&2\ntouch /var/task/x 2>/dev/null || echo task-read-only\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out outputtest.Buffer
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb, err := d.Create(ctx, sandbox.Spec{
		ID: "kernel-1", CodeDir: code, Command: []string{"/var/task/bootstrap"},
		Env: []string{"PATH=/usr/bin:/bin"}, RuntimeAPI: http404{}, Output: &out, MemoryMB: 128,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("created in %v", time.Since(t0))
	defer sb.Destroy(context.Background())
	if !polltest.Wait(time.Minute, func() bool {
		_ = sb.SyncOutput(context.Background())
		return strings.Contains(out.String(), "task-read-only")
	}) {
		t.Fatalf("output %q: want the bootstrap's three lines", out.String())
	}
	host, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	got := out.String()
	if !strings.Contains(got, "kernel "+d.KernelRelease()) || strings.Contains(got, "kernel "+strings.TrimSpace(string(host))+"\n") {
		t.Errorf("output %q: want the guest kernel %s (host: %s)", got, d.KernelRelease(), host)
	}
	if !strings.Contains(got, "cwd /var/task") {
		t.Errorf("output %q: want cwd /var/task", got)
	}
	pid := sb.(*microvm.Sandbox).Pid()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if uid, _ := strconv.Atoi(strings.Fields(grepLine(string(status), "Uid:") + " x x")[1]); uid < microvm.DefaultVMMUID || uid >= microvm.DefaultVMMUID+microvm.DefaultVMMUIDs {
		t.Errorf("QEMU (pid %d) runs as %q, want a VMM user %d+ (TestVMMJail checks the jail)", pid, grepLine(string(status), "Uid:"), microvm.DefaultVMMUID)
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Errorf("QEMU (pid %d) survived Destroy", pid)
	}
	if err := sb.Err(); err == nil || !strings.Contains(err.Error(), "destroyed") {
		t.Errorf("Err() = %v after Destroy", err)
	}
}

func grepLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

type http404 struct{}

func (http404) ServeHTTP(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }

// TestConformance runs the shared sandbox suite against the driver, one
// VM at a time. Under TCG it takes minutes, so it runs only when
// FLINT_TEST_MICROVM=1 (CI sets it).
func TestConformance(t *testing.T) {
	if os.Getenv("FLINT_TEST_MICROVM") != "1" {
		t.Skip("FLINT_TEST_MICROVM=1 runs the conformance suite in microVMs (minutes under TCG)")
	}
	if os.Getenv(sandboxtest.TimeScaleEnv) == "" {
		// Guests boot in seconds under TCG and run one at a time.
		t.Setenv(sandboxtest.TimeScaleEnv, "4")
	}
	sandboxtest.RunWith(t, func(t *testing.T) sandbox.Driver { return newDriver(t) }, sandboxtest.Options{
		HostPids: func(sb sandbox.Sandbox) []int { return []int{sb.(*microvm.Sandbox).Pid()} },
	})
}
