package process_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process"
	"github.com/flintdev/flint/internal/sandbox/process/cgroup"
)

// testParent is per test process, so that concurrent runs of this package
// (several checkouts on one host) never share or clean up each other's
// cgroups; TestMain removes it (and staleParent) at the end.
var (
	testParent  = "flint-test-" + strconv.Itoa(os.Getpid())
	staleParent = testParent + "-stale"
)

func testDriver(t testing.TB) *process.Driver {
	return newDriver(t, func(c *process.Config) { c.CgroupParent = testParent })
}

// codeDir is a world-readable empty code directory.
func codeDir(t testing.TB) string {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func spec(t testing.TB, id string, cmd ...string) sandbox.Spec {
	return sandbox.Spec{
		ID: id, CodeDir: codeDir(t), Command: cmd,
		Env:        []string{"PATH=/usr/bin:/bin"},
		RuntimeAPI: http.NotFoundHandler(), Output: io.Discard,
		MemoryMB: 256, EphemeralStorageMB: 32,
	}
}

// cgroupDirs lists the cgroup directories of sandbox id under parent on
// cgroup version v, as memory, pids and cpu directories: three v1
// hierarchies, or the one unified v2 directory three times.
func cgroupDirs(v cgroup.Version, parent, id string) []string {
	if v == cgroup.V2 {
		d := filepath.Join(process.DefaultCgroupRoot, parent, id)
		return []string{d, d, d}
	}
	var ds []string
	for _, c := range []string{"memory", "pids", "cpu"} {
		ds = append(ds, filepath.Join(process.DefaultCgroupRoot, c, parent, id))
	}
	return ds
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func statusField(pid int, key string) string {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

func hostMountsUnder(t *testing.T, dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var ms []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			ms = append(ms, f[4])
		}
	}
	return ms
}

// TestLimitsIdentityAndCleanup checks a created sandbox, and one prepared
// (under a pool id, with the preparation's memory limit) then claimed:
// both end up with the function's limits in cgroups named after the
// sandbox (a claimed one on cgroup v2 keeps its pool cgroup: v2 cannot
// rename, and a move would be a migration on the cold start's path), and
// nothing of the preparation is left.
func TestLimitsIdentityAndCleanup(t *testing.T) {
	t.Run("Create", func(t *testing.T) { testLimitsIdentityAndCleanup(t, false) })
	t.Run("PrepareClaim", func(t *testing.T) { testLimitsIdentityAndCleanup(t, true) })
}

func testLimitsIdentityAndCleanup(t *testing.T, pooled bool) {
	d := testDriver(t)
	id := "limits-" + strconv.Itoa(os.Getpid())
	var sb sandbox.Sandbox
	var err error
	if pooled {
		before := poolCgroups(t, d)
		pr := prepare(t, d)
		if got := poolCgroups(t, d); len(got) != len(before)+1 {
			t.Fatalf("prepared sandbox's cgroups: %v, then %v", before, got)
		}
		sb, err = pr.Claim(context.Background(), spec(t, id, "/bin/sleep", "600"))
		if err == nil {
			want := len(before)
			if d.CgroupVersion() == cgroup.V2 {
				want++ // kept by the claimed sandbox
			} else {
				// The claim names the cgroups after the sandbox in
				// the background.
				waitExist(t, cgroupDirs(cgroup.V1, testParent, id))
			}
			if got := poolCgroups(t, d); len(got) != want {
				t.Errorf("pool cgroups after the claim: %v (before the preparation: %v)", got, before)
			}
		}
	} else {
		sb, err = d.Create(context.Background(), spec(t, id, "/bin/sleep", "600"))
	}
	if err != nil {
		t.Fatal(err)
	}
	ps := sb.(*process.Sandbox)
	pid := ps.Pid()
	v := d.CgroupVersion()
	dirs := cgroupDirs(v, testParent, id)
	if v == cgroup.V2 && pooled {
		// The pool cgroup it was prepared in, where the runtime is now.
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(strings.TrimSpace(string(b)), "0::")
		if name := filepath.Base(rel); !strings.HasPrefix(name, "pool-") || filepath.Dir(rel) != "/"+testParent {
			t.Fatalf("claimed sandbox's cgroup %q, want %s/pool-…", rel, testParent)
		}
		d := filepath.Join(process.DefaultCgroupRoot, rel)
		dirs = []string{d, d, d}
	}
	mem, pids, cpu := dirs[0], dirs[1], dirs[2]
	quota := strconv.Itoa(100000 * (256 * 1000 / 1769) / 1000) // 256/1769 of a CPU
	memFile, cpuFile, cpuWant := "memory.limit_in_bytes", "cpu.cfs_quota_us", quota
	if v == cgroup.V2 {
		memFile, cpuFile, cpuWant = "memory.max", "cpu.max", quota+" 100000"
	}
	if got := readTrim(t, filepath.Join(mem, memFile)); got != strconv.Itoa(256<<20) {
		t.Errorf("%s = %s", memFile, got)
	}
	if got := readTrim(t, filepath.Join(pids, "pids.max")); got != "1024" {
		t.Errorf("pids.max = %s", got)
	}
	if got := readTrim(t, filepath.Join(cpu, cpuFile)); got != cpuWant {
		t.Errorf("%s = %s, want %s (256/1769 of a CPU)", cpuFile, got, cpuWant)
	}
	for _, dir := range dirs {
		if procs := readTrim(t, filepath.Join(dir, "cgroup.procs")); !slices.Contains(strings.Fields(procs), strconv.Itoa(pid)) {
			t.Errorf("pid %d not in %s (%q)", pid, dir, procs)
		}
	}
	if uid := statusField(pid, "Uid"); uid != "993 993 993 993" {
		t.Errorf("runtime Uid %q, want 993 (sbx_user1051)", uid)
	}
	if gid := statusField(pid, "Gid"); gid != "990 990 990 990" {
		t.Errorf("runtime Gid %q, want 990", gid)
	}
	steps := ps.Timings()
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	want := []string{"cgroup", "start", "wait-prepared", "exec", "init/rootfs", "init/pivot-root"}
	if pooled {
		// A claimed sandbox reports what its claim cost.
		want = []string{"send-claim", "claim-cgroup", "exec", "init/code", "init/root-ro"}
		if slices.Contains(names, "start") {
			t.Errorf("claimed sandbox reports its preparation's steps: %v", names)
		}
	}
	for _, want := range want {
		if !slices.Contains(names, want) {
			t.Errorf("Timings() lacks step %q: %v", want, names)
		}
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left behind (%v)", dir, err)
		}
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Errorf("init pid %d still exists", pid)
	}
	if !errors.Is(sb.Err(), process.ErrDestroyed) {
		t.Errorf("Err() = %v, want ErrDestroyed", sb.Err())
	}
}

func TestFailedCreateLeavesNothing(t *testing.T) {
	d := testDriver(t)
	baseFDs := countFDs()
	base := hostMountsUnder(t, "/")
	cases := []struct {
		name, step string
		mutate     func(*sandbox.Spec)
	}{
		{"missing runtime", "exec", func(s *sandbox.Spec) { s.Command = []string{"/var/task/nope"} }},
		{"missing code dir", "send-claim", func(s *sandbox.Spec) { s.CodeDir = "/nonexistent/code" }},
		{"runtime not in PATH", "exec", func(s *sandbox.Spec) { s.Command = []string{"no-such-command"} }},
	}
	for i, tc := range cases {
		id := "fail-" + strconv.Itoa(i) + "-" + strconv.Itoa(os.Getpid())
		sp := spec(t, id, "/bin/true")
		tc.mutate(&sp)
		_, err := d.Create(context.Background(), sp)
		if err == nil {
			t.Fatalf("%s: Create succeeded", tc.name)
		}
		if !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), ": "+tc.step+": ") {
			t.Errorf("%s: error %q should name the sandbox and step %q", tc.name, err, tc.step)
		}
		for _, dir := range cgroupDirs(d.CgroupVersion(), testParent, id) {
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: cgroup %s left behind", tc.name, dir)
			}
		}
	}
	if n := countFDs(); n > baseFDs {
		t.Errorf("descriptors: %d before, %d after", baseFDs, n)
	}
	if after := hostMountsUnder(t, "/"); len(after) != len(base) {
		t.Errorf("host mounts changed: %d before, %d after", len(base), len(after))
	}
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// TestInitRefusesToRunOutsideSandbox starts the binary in init mode by hand:
// without being pid 1 of a fresh pid namespace it must refuse to touch
// anything.
func TestInitRefusesToRunOutsideSandbox(t *testing.T) {
	cmd := exec.Command(os.Args[0], "__flint_sandbox_init")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "pid != 1") {
		t.Fatalf("init outside a sandbox: err %v, output %q", err, out)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []process.Config{
		{},
		{StateDir: "relative"},
		{StateDir: "/x", UID: -1},
		{StateDir: "/x", PidsMax: -1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	if err := (process.Config{StateDir: "/x"}).Validate(); err != nil {
		t.Errorf("Validate minimal config: %v", err)
	}
}

// buildInitBin builds the dedicated init binary (cmd/flint-sandbox-init).
func buildInitBin(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "flint-sandbox-init")
	gobuildtest.Build(t, "github.com/flintdev/flint/cmd/flint-sandbox-init", out)
	return out
}

// BenchmarkCreate measures Create (not Destroy) of a sandbox running
// /bin/sleep, with the test binary re-executed as init and with the
// dedicated init binary, and reports the median, p90 and the mean of each
// step.
func BenchmarkCreate(b *testing.B) {
	b.Run("reexec", func(b *testing.B) { benchCreate(b, "") })
	b.Run("initbin", func(b *testing.B) { benchCreate(b, buildInitBin(b)) })
}

// BenchmarkClaim measures Claim of a sandbox prepared beforehand (off the
// timer): what a cold start costs the driver when the pool has one ready.
func BenchmarkClaim(b *testing.B) {
	b.Run("reexec", func(b *testing.B) { benchCreate(b, "", claiming) })
}

// claiming marks benchCreate's driver config: prepare, then time Claim.
func claiming(*process.Config) {}

func benchCreate(b *testing.B, initPath string, mutate ...func(*process.Config)) {
	claim := len(mutate) > 0 && reflect.ValueOf(mutate[0]).Pointer() == reflect.ValueOf(claiming).Pointer()
	d := newDriver(b, append([]func(*process.Config){func(c *process.Config) {
		c.CgroupParent = testParent
		c.InitPath = initPath
	}}, mutate...)...)
	b.Cleanup(func() { d.Close(context.Background()) })
	sp := spec(b, "", "/bin/sleep", "600")
	sp.MemoryMB = 128
	var lat []time.Duration
	stepSum := map[string]time.Duration{}
	var order []string
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		sp.ID = "bench-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i)
		create := d.Create
		if claim {
			b.StopTimer()
			pr, err := d.Prepare(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			create = pr.Claim
			b.StartTimer()
		}
		t0 := time.Now()
		sb, err := create(context.Background(), sp)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		for _, st := range sb.(*process.Sandbox).Timings() {
			if _, ok := stepSum[st.Name]; !ok {
				order = append(order, st.Name)
			}
			stepSum[st.Name] += st.Duration
		}
		if err := sb.Destroy(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds()), "p90-µs")
	var sb strings.Builder
	for _, name := range order {
		sb.WriteString(" " + name + "=" + (stepSum[name] / time.Duration(len(lat))).Round(time.Microsecond).String())
	}
	b.Logf("mean per step over %d creates:%s", len(lat), sb.String())
}

func TestRemoveStale(t *testing.T) {
	mk := func() *process.Driver {
		return newDriver(t, func(c *process.Config) { c.CgroupParent = staleParent })
	}
	d1 := mk()
	sb, err := d1.Create(context.Background(), spec(t, "stale-1", "/bin/sleep", "600"))
	if err != nil {
		t.Fatal(err)
	}
	// The host "crashes": the sandbox dies, nobody calls Destroy.
	syscallKill(t, sb.(*process.Sandbox).Pid())
	<-sb.Done()
	dir := cgroupDirs(d1.CgroupVersion(), staleParent, "stale-1")[0]
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("cgroup should still exist: %v", err)
	}
	n, err := mk().RemoveStale(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("RemoveStale = %d, %v; want 1", n, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s survives RemoveStale", dir)
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Errorf("Destroy after RemoveStale: %v", err)
	}
}

func syscallKill(t *testing.T, pid int) {
	t.Helper()
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
}

// TestBrokenInit: an init that dies at once, or never answers, fails
// Create (bounded by its ctx) and leaves nothing behind.
func TestBrokenInit(t *testing.T) {
	dir := t.TempDir()
	hang := filepath.Join(dir, "hang")
	marker := "600." + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(hang, []byte("#!/bin/sh\nexec /bin/sleep "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, init, want string
		timeout          time.Duration
	}{
		{"dies", "/bin/false", "wait-prepared: init died", 10 * time.Second},
		{"hangs", hang, "context deadline exceeded", time.Second},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, func(c *process.Config) { c.CgroupParent = testParent; c.InitPath = tc.init })
			id := "broken-" + strconv.Itoa(i) + "-" + strconv.Itoa(os.Getpid())
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			_, err := d.Create(ctx, spec(t, id, "/bin/true"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Create: %v, want %q", err, tc.want)
			}
			for _, dir := range cgroupDirs(d.CgroupVersion(), testParent, id) {
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("cgroup %s left behind", dir)
				}
			}
			if out, _ := exec.Command("pgrep", "-f", "sleep "+marker).Output(); len(out) > 0 {
				t.Errorf("the hanging init survived: %s", out)
			}
		})
	}
}

// waitExist waits (at most 10s) until every path exists.
func waitExist(t *testing.T, paths []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range paths {
		for {
			_, err := os.Stat(p)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", p, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestLiveSandboxesHoldNoThread: the driver waits for a sandbox's end in
// the Go runtime's poller (a pidfd), not in a blocking waitid, so live
// sandboxes hold no OS thread of the server each (and starting one does
// not leave a Go P in a blocking system call).
func TestLiveSandboxesHoldNoThread(t *testing.T) {
	d := testDriver(t)
	ctx := context.Background()
	id := func(i int) string { return "threads-" + strconv.Itoa(i) + "-" + strconv.Itoa(os.Getpid()) }
	// Whatever threads a creation itself needs exist after a first one.
	sb, err := d.Create(ctx, spec(t, id(0), "/bin/sleep", "600"))
	if err != nil {
		t.Fatal(err)
	}
	sb.Destroy(ctx)
	before := threads(t)
	const n = 16
	for i := 1; i <= n; i++ {
		sb, err := d.Create(ctx, spec(t, id(i), "/bin/sleep", "600"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Destroy(context.Background()) })
	}
	if grown := threads(t) - before; grown >= n/2 {
		t.Errorf("%d live sandboxes: the process grew by %d threads", n, grown)
	}
}

// threads is the number of threads of this process.
func threads(t *testing.T) int {
	t.Helper()
	n, err := strconv.Atoi(statusField(os.Getpid(), "Threads"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
