package v2vm_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/sandbox/sandboxtest"
	"github.com/flintdev/flint/internal/sandbox/v2vm"
	"github.com/flintdev/flint/internal/vm/initramfs"
	"github.com/flintdev/flint/internal/vm/kernel"
	"github.com/flintdev/flint/internal/vm/qemu"
)

const module = "github.com/flintdev/flint"

// guestMemoryMiB is the guest's RAM: the initramfs (test binaries, ~60 MiB,
// moved to a tmpfs) plus the tests' sandboxes, whose memory limits the
// OOM tests fill (64 MiB at most at once).
const guestMemoryMiB = 384

// testBinaries are the packages whose tests run in the guest, with the
// tests they skip there and why.
var testBinaries = []struct {
	pkg  string
	skip string
}{
	{pkg: "internal/sandbox/process/cgroup"},
	// Runtimes and egress need python3/node, nft and veth: features
	// independent of the cgroup version, tested on the host. The suite with
	// the dedicated init binary repeats TestConformance with the same init
	// code linked apart; it would add a minute under TCG.
	{pkg: "internal/sandbox/process", skip: "^(TestRuntimes|TestEgress|TestEgressSkipsTakenLink|TestConformanceInitBinary)$"},
	{pkg: "internal/sandbox/process/nsinit"},
}

// prebuilt are the programs the tests build with gobuildtest, built here
// because the guest has no Go toolchain.
var prebuilt = []string{
	module + "/internal/sandbox/sandboxtest/probe",
	module + "/cmd/flint-sandbox-init",
}

// hostPrograms are what the tests and their sandboxes run from the
// guest's /usr, copied from the host with their shared libraries.
var hostPrograms = []string{
	"/bin/sh", "/bin/sleep", "/bin/true", "/bin/false", "/usr/bin/head",
	"/usr/bin/tr", "/usr/bin/setsid", "/bin/grep", "/usr/bin/pgrep", "/bin/cat",
}

// guestModules are loaded by the guest's init, dependencies first: the
// virtio-mmio transport and console the microVM driver's channel uses.
// This test needs neither (its output goes over the serial console); they
// prove the module tooling in a real guest.
var guestModules = []string{"virtio_mmio", "virtio_console"}

// guestCmdline: only emergencies (panics) from the kernel on the console,
// so that its messages (the OOM killer's) never split a test's result line.
var guestCmdline = []string{"loglevel=1", "rdinit=/init"}

// mustPass are tests that must run and pass in the guest (not skip): the
// cgroup v2 paths of package cgroup and the process driver on v2.
var mustPass = []string{
	"TestV2", "TestOOMKillCounted/v2", "TestStatFilesLifecycle/v2",
	"TestCreateClosesOnFailure/v2", "TestStatsDoesNotAllocate/v2", "TestV2RootHoldingProcesses",
	"TestConformance", "TestLimitsIdentityAndCleanup", "TestFailedCreateLeavesNothing",
	"TestRemoveStale", "TestBrokenInit", "TestInitStartsInItsCgroup/clone-into", "TestOpenDir/v2",
}

// benchEnv names the environment variable that, when set to a -test.bench
// pattern, also runs the matching benchmarks (30 iterations each) of the
// packages in the guest, after their tests: a v2 measurement on a host
// without cgroup v2 (e.g. BenchmarkPrepareCgroupStart).
const benchEnv = "FLINT_V2VM_BENCH"

// TestCgroupV2InVM runs the process sandbox's cgroup and driver tests in a
// QEMU guest whose cgroup hierarchy is pure v2 (see the package doc).
func TestCgroupV2InVM(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: boots a VM and runs the sandbox suites in it (minutes under TCG)")
	}
	qemuBin, err := exec.LookPath(qemu.DefaultBinary)
	if err != nil {
		t.Skipf("QEMU is not installed (apt-get install qemu-system-x86): %v", err)
	}
	t0 := time.Now()
	k, err := kernel.Fetch(context.Background(), kernel.Config{CacheDir: kernel.DefaultCacheDir()})
	if err != nil {
		t.Skipf("no guest kernel: %v", err)
	}
	t.Logf("kernel %s from %s (%v)", k.Release, k.Dir, time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	work := t.TempDir()
	initrd := filepath.Join(work, "initramfs.cpio")
	size := buildInitramfs(t, k, work, initrd)
	t.Logf("initramfs %d MiB built in %v", size>>20, time.Since(t0).Round(time.Millisecond))

	accel := qemu.TCG
	if ok, why := qemu.ProbeKVM(qemuBin, k.Vmlinux, 5*time.Second); ok {
		accel = qemu.KVM
	} else {
		t.Logf("KVM unusable, using TCG: %s", why)
	}

	timeout := 15 * time.Minute
	if dl, ok := t.Deadline(); ok && time.Until(dl)-30*time.Second < timeout {
		timeout = time.Until(dl) - 30*time.Second
	}
	con := newConsole(t)
	t0 = time.Now()
	vm, err := qemu.Start(qemu.Config{
		Binary: qemuBin, Kernel: k.Vmlinux, Initrd: initrd, Accel: accel,
		MemoryMiB: guestMemoryMiB, CPUs: 1, Cmdline: guestCmdline,
		Console: con, Stderr: con,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Kill QEMU, then wait until every console line is logged: no t.Log may
	// come after the test ends.
	defer func() { vm.Kill(); con.Close() }()
	select {
	case <-vm.Done():
	case <-time.After(timeout):
		vm.Kill()
		con.Close()
		t.Fatalf("the guest did not finish within %v", timeout)
	}
	if err := vm.Wait(); err != nil {
		t.Errorf("QEMU: %v", err)
	}
	con.Close()
	t.Logf("guest ran %v (boot to init ready: %s s of guest uptime; memory: %s)", time.Since(t0).Round(100*time.Millisecond), con.ready, con.memory)
	con.check(t)
}

// buildInitramfs compiles the guest's init, the test binaries and the
// prebuilt programs, and writes the initramfs to out. It returns its size.
func buildInitramfs(t *testing.T, k *kernel.Kernel, work, out string) int64 {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	goBin := gobuildtest.GoTool(t)
	build := func(args ...string) {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	b := initramfs.New()
	bin := filepath.Join(work, "bin")
	build("build", "-o", filepath.Join(bin, "init"), "./internal/sandbox/v2vm/guestinit")
	must(t, b.File("/init", filepath.Join(bin, "init"), 0o755))
	plan := v2vm.Plan{
		Controllers: []string{"memory", "pids", "cpu"},
		Env: []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root", "TMPDIR=/tmp",
			gobuildtest.PrebuiltEnv + "=/opt/flint/prebuilt",
			// Emulation runs the suite ~10 times slower than the host.
			sandboxtest.TimeScaleEnv + "=10"},
	}
	for _, tb := range testBinaries {
		name := filepath.Base(tb.pkg) + ".test"
		build("test", "-c", "-o", filepath.Join(bin, name), "./"+tb.pkg)
		must(t, b.File("/opt/flint/tests/"+name, filepath.Join(bin, name), 0o755))
		args := []string{"-test.v", "-test.count=1", "-test.timeout=10m"}
		if tb.skip != "" {
			args = append(args, "-test.skip", tb.skip)
		}
		if bench := os.Getenv(benchEnv); bench != "" {
			// A benchmark that matches nothing in a package prints nothing.
			args = append(args, "-test.bench", bench, "-test.benchtime", "30x")
		}
		plan.Steps = append(plan.Steps, v2vm.Step{Name: tb.pkg, Path: "/opt/flint/tests/" + name, Args: args, Dir: "/tmp"})
	}
	for _, pkg := range prebuilt {
		p := filepath.Join(bin, "prebuilt", filepath.FromSlash(pkg))
		build("build", "-trimpath", "-o", p, pkg)
		must(t, b.File("/opt/flint/prebuilt/"+pkg, p, 0o755))
	}
	mods, err := kernel.ResolveModules(k.ModulesDir, guestModules...)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		p := "/opt/flint/modules/" + m.Name + ".ko"
		must(t, b.File(p, m.Path, 0o644))
		plan.Modules = append(plan.Modules, p)
	}
	for _, p := range hostPrograms {
		must(t, b.AddHostProgram(p))
	}
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/etc"} {
		must(t, b.Dir(d, 0o755))
	}
	pj, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	must(t, b.Bytes(v2vm.PlanPath, pj, 0o644))
	n, err := b.WriteFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// console receives the guest's serial console: it logs every line as it
// comes (so go test -v streams the guest's test output) and keeps what
// check needs.
type console struct {
	t  *testing.T
	pw *io.PipeWriter
	wg sync.WaitGroup

	// Written by the reader goroutine, read after Close.
	ready   string
	modules []string
	memory  string
	steps   map[string]int // exit code by step
	done    string
	results map[string]string // test name -> PASS, FAIL or SKIP
	order   []string
}

var resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)

func newConsole(t *testing.T) *console {
	pr, pw := io.Pipe()
	c := &console{t: t, pw: pw, steps: map[string]int{}, results: map[string]string{}}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			c.line(strings.TrimRight(sc.Text(), "\r"))
		}
		io.Copy(io.Discard, pr)
	}()
	return c
}

func (c *console) Write(p []byte) (int, error) { return c.pw.Write(p) }

// Close ends the stream and waits until every line is handled.
func (c *console) Close() {
	c.pw.Close()
	c.wg.Wait()
}

func (c *console) line(s string) {
	c.t.Log("guest: " + s)
	switch {
	case strings.HasPrefix(s, v2vm.MarkReady):
		c.ready = strings.TrimPrefix(s, v2vm.MarkReady)
	case strings.HasPrefix(s, v2vm.MarkModules):
		c.modules = strings.Fields(strings.TrimPrefix(s, v2vm.MarkModules))
	case strings.HasPrefix(s, v2vm.MarkMemory):
		c.memory = strings.TrimPrefix(s, v2vm.MarkMemory)
	case strings.HasPrefix(s, v2vm.MarkStepEnd):
		var name string
		var code int
		if _, err := fmt.Sscanf(strings.TrimPrefix(s, v2vm.MarkStepEnd), "%s exit=%d", &name, &code); err == nil {
			c.steps[name] = code
			c.order = append(c.order, name)
		}
	case strings.HasPrefix(s, v2vm.MarkDone):
		c.done = strings.TrimPrefix(s, v2vm.MarkDone)
	default:
		if m := resultLine.FindStringSubmatch(s); m != nil {
			if _, seen := c.results[m[2]]; !seen || m[1] == "FAIL" {
				c.results[m[2]] = m[1]
			}
		}
	}
}

// check fails t unless the guest finished, every step passed and the
// tests that matter ran and passed in it.
func (c *console) check(t *testing.T) {
	if c.done == "" {
		t.Fatal("the guest never reported the end of its run (see its console above)")
	}
	for _, m := range append([]string{"virtio", "virtio_ring"}, guestModules...) {
		if !slices.Contains(c.modules, m) {
			t.Errorf("module %s not loaded in the guest (loaded: %v)", m, c.modules)
		}
	}
	for _, tb := range testBinaries {
		code, ok := c.steps[tb.pkg]
		if !ok {
			t.Errorf("%s: never ran in the guest", tb.pkg)
		} else if code != 0 {
			t.Errorf("%s: failed in the guest (exit %d)", tb.pkg, code)
		}
	}
	for name, r := range c.results {
		if r == "FAIL" {
			t.Errorf("%s failed in the guest", name)
		}
	}
	for _, name := range mustPass {
		if r := c.results[name]; r != "PASS" {
			t.Errorf("%s: %q in the guest, want PASS", name, r)
		}
	}
	var skipped []string
	for name, r := range c.results {
		if r == "SKIP" && strings.HasPrefix(name, "TestConformance/") {
			skipped = append(skipped, name)
		}
	}
	if len(skipped) > 0 {
		t.Errorf("conformance subtests skipped in the guest: %v", skipped)
	}
	if c.done != "ok" {
		t.Errorf("guest: %s", c.done)
	}
}
