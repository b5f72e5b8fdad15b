// Package sandboxtest is the conformance suite every sandbox driver runs:
//
//	func TestConformance(t *testing.T) {
//		sandboxtest.Run(t, func(t *testing.T) sandbox.Driver { ... })
//	}
//
// It runs a small static Go program (package probe, built with go build at
// the start of Run, so the go tool must be on PATH) inside real sandboxes
// and checks the sandbox.Driver contract: the Runtime API and nothing else
// of the host is reachable, /var/task is read-only and /tmp writable and
// private and EphemeralStorageMB large, the code runs unprivileged with a clean environment and only fds
// 0-2, the memory limit OOM-kills (and Err wraps sandbox.ErrOutOfMemory), a
// fork bomb is stopped, Destroy kills double-forked and setsid children,
// SyncOutput keeps ordering, creates can run concurrently, a failed
// Create leaves nothing behind, and a sandbox cannot make the host serve
// more than MaxRuntimeAPIConns connections at once. The subtests run one after the other.
//
// newDriver is called once per Run; it should t.Skip with a clear reason
// when the host cannot run the driver (not root, no cgroups, no KVM...).
package sandboxtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/polltest"
	"github.com/flintdev/flint/internal/sandbox"
)

// Run runs the conformance suite against the driver newDriver returns.
func Run(t *testing.T, newDriver func(t *testing.T) sandbox.Driver) {
	RunWith(t, newDriver, Options{})
}

// Options adapt the suite to a driver.
type Options struct {
	// HostPids, when set, says that the driver runs each sandbox on a
	// kernel of its own (a microVM): the sandbox's processes are not host
	// processes, so the probes that look for them on the host (Destroy
	// and runtime exit killing every process) look inside instead, and
	// check that the host processes HostPids returns for a sandbox (its
	// VMM) are gone.
	HostPids func(sb sandbox.Sandbox) []int
}

// RunWith is Run with options.
func RunWith(t *testing.T, newDriver func(t *testing.T) sandbox.Driver, opts Options) {
	drv := newDriver(t)
	s := &suite{drv: drv, codeDir: buildProbe(t), prefix: "st" + randomHex(4), opts: opts}
	// Warm up (first-use allocations of the runtime and the driver) before
	// taking the descriptor baseline.
	t.Run("RuntimeAPI", s.testRuntimeAPI)
	baseFDs, baseGoroutines := openFDs(), runtime.NumGoroutine()
	tests := []struct {
		name string
		f    func(*testing.T)
	}{
		{"Isolation", s.testIsolation},
		{"PrivateTmp", s.testPrivateTmp},
		{"ExitedSandbox", s.testExited},
		{"SyncOutputOrdering", s.testSyncOutput},
		{"OutOfMemory", s.testOOM},
		{"ForkBomb", s.testForkBomb},
		{"DestroyKillsEverything", s.testDestroy},
		{"RuntimeExitKillsOrphans", s.testRuntimeExit},
		{"ConcurrentCreates", s.testConcurrent},
		{"CreateFailureCleansUp", s.testCreateFailure},
		{"RuntimeAPIConnectionLimit", s.testConnLimit},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.f)
	}
	if !polltest.Wait(Scaled(2*time.Second), func() bool { return openFDs() <= baseFDs }) {
		t.Errorf("descriptor leak: %d open before the subtests, %d after", baseFDs, openFDs())
	}
	if !polltest.Wait(Scaled(2*time.Second), func() bool { return runtime.NumGoroutine() <= baseGoroutines }) {
		t.Errorf("goroutine leak: %d before the subtests, %d after", baseGoroutines, runtime.NumGoroutine())
	}
}

func (s *suite) testRuntimeAPI(t *testing.T) {
	a, out := newAPI(), &output{}
	sb := s.create(t, s.spec(a, out, "get", "/2018-06-01/runtime/invocation/next"))
	if sb.ID() == "" {
		t.Fatal("empty ID")
	}
	waitDone(t, sb, 20*time.Second)
	if err := sb.SyncOutput(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := "200 " + a.token; !strings.Contains(out.String(), want) {
		t.Fatalf("output %q lacks %q (the Runtime API at $AWS_LAMBDA_RUNTIME_API)", out, want)
	}
	if sb.Err() == nil {
		t.Error("Err() = nil after the sandbox exited")
	}
}

// report mirrors the probe's Report.
type report struct {
	UID, GID, Pid                            int
	Groups                                   []int
	Status                                   map[string]string
	OpenFDs                                  []int
	Env                                      []string
	Hostname, Cwd                            string
	WriteTask, WriteTmp, WriteRoot, WriteEtc string
	HostFileVisible                          bool
	TmpEntries                               []string
	TmpMB                                    int64
	Unshare, UnshareUser, Mount, RawSocket   string
	ConnectHost                              string
	Passwd                                   string
	Kcore                                    string
	Runtime, WriteRuntime                    string
	Opt, WriteOpt, OptMount                  string
	Syscalls                                 map[string]string
}

func (s *suite) runReport(t *testing.T, mutate func(*sandbox.Spec)) (report, sandbox.Sandbox) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hostFile := filepath.Join(os.TempDir(), "flint-sandboxtest-"+randomHex(6))
	if err := os.WriteFile(hostFile, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(hostFile)
	a, out := newAPI(), &output{}
	spec := s.spec(a, out, "report", ln.Addr().String(), hostFile)
	if mutate != nil {
		mutate(&spec)
	}
	sb := s.create(t, spec)
	b := waitReport(t, sb, a, out)
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("bad report %q: %v", b, err)
	}
	// The host listener must not have seen a connection.
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Error("a host listener on 127.0.0.1 accepted a connection from the sandbox")
	}
	return r, sb
}

func (s *suite) testIsolation(t *testing.T) {
	t.Setenv("FLINT_SANDBOXTEST_HOST_SECRET", "leaked")
	runtimeDir := t.TempDir()
	if err := os.Chmod(runtimeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	marker := "runtime-" + randomHex(4)
	if err := os.WriteFile(filepath.Join(runtimeDir, "marker"), []byte(marker), 0o644); err != nil {
		t.Fatal(err)
	}
	optDir := t.TempDir()
	if err := os.Chmod(optDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(optDir, "marker"), []byte("opt-"+marker), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _ := s.runReport(t, func(sp *sandbox.Spec) {
		sp.Env = append(sp.Env, "FOO=bar")
		sp.RuntimeDir = runtimeDir
		sp.OptDir = optDir
	})
	if r.Runtime != marker || r.WriteRuntime == "ok" {
		t.Errorf("/var/runtime: read %q (want %q), write %s (want read-only)", r.Runtime, marker, r.WriteRuntime)
	}
	opts := strings.Split(r.OptMount, ",")
	if r.Opt != "opt-"+marker || r.WriteOpt == "ok" || !slices.Contains(opts, "ro") || !slices.Contains(opts, "nosuid") || !slices.Contains(opts, "nodev") {
		t.Errorf("/opt: read %q (want %q), write %s, mounted %q (want read-only, ro,nosuid,nodev)", r.Opt, "opt-"+marker, r.WriteOpt, r.OptMount)
	}
	if len(r.Syscalls) == 0 {
		t.Error("the probe tried no system calls")
	}
	for name, res := range r.Syscalls {
		want := "operation not permitted"
		if name == "clone3" {
			want = "function not implemented" // so that libc falls back to clone
		}
		if res != want {
			t.Errorf("%s: %s, want %s", name, res, want)
		}
	}
	if r.UID == 0 || r.GID == 0 || slices.Contains(r.Groups, 0) {
		t.Errorf("runs as uid %d gid %d groups %v, want no root ids", r.UID, r.GID, r.Groups)
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if v := r.Status[k]; strings.Trim(v, "0") != "" {
			t.Errorf("%s = %q, want no capabilities", k, v)
		}
	}
	if r.Status["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", r.Status["NoNewPrivs"])
	}
	if r.Status["Seccomp"] != "2" {
		t.Errorf("Seccomp = %q, want 2 (filter)", r.Status["Seccomp"])
	}
	if len(r.OpenFDs) != 0 {
		t.Errorf("descriptors %v open besides 0-2", r.OpenFDs)
	}
	var api string
	for _, kv := range r.Env {
		if strings.HasPrefix(kv, "FLINT_SANDBOXTEST_HOST_SECRET=") {
			t.Errorf("host environment leaked: %s", kv)
		}
		if v, ok := strings.CutPrefix(kv, "AWS_LAMBDA_RUNTIME_API="); ok {
			api = v
		}
	}
	if !slices.Contains(r.Env, "FOO=bar") || api == "" || len(r.Env) != len(baseEnv())+2 {
		t.Errorf("environment %q, want Spec.Env plus AWS_LAMBDA_RUNTIME_API", r.Env)
	}
	if _, _, err := net.SplitHostPort(api); err != nil {
		t.Errorf("AWS_LAMBDA_RUNTIME_API=%q is not host:port", api)
	}
	if r.Cwd != "/var/task" {
		t.Errorf("cwd %q, want /var/task", r.Cwd)
	}
	if r.WriteTask == "ok" || r.WriteRoot == "ok" || r.WriteEtc == "ok" {
		t.Errorf("wrote to read-only places: /var/task %s, / %s, /etc %s", r.WriteTask, r.WriteRoot, r.WriteEtc)
	}
	if r.WriteTmp != "ok" {
		t.Errorf("cannot write /tmp: %s", r.WriteTmp)
	}
	if r.TmpMB != specTmpMB {
		t.Errorf("/tmp holds %d MiB, want EphemeralStorageMB = %d", r.TmpMB, specTmpMB)
	}
	if r.HostFileVisible {
		t.Error("a file in the host's temp dir is visible inside")
	}
	if r.Unshare == "ok" || r.UnshareUser == "ok" || r.Mount == "ok" || r.RawSocket == "ok" {
		t.Errorf("privileged operations succeeded: unshare %s, unshare(user) %s, mount %s, raw socket %s",
			r.Unshare, r.UnshareUser, r.Mount, r.RawSocket)
	}
	if r.ConnectHost == "ok" {
		t.Error("the sandbox reached a host listener on 127.0.0.1")
	}
	if !strings.Contains(r.Passwd, fmt.Sprintf(":%d:%d:", r.UID, r.GID)) {
		t.Errorf("/etc/passwd lacks the sandbox user %d:%d:\n%s", r.UID, r.GID, r.Passwd)
	}
	if !strings.HasPrefix(r.Kcore, "0 bytes") {
		t.Errorf("/proc/kcore readable: %s", r.Kcore)
	}
	if _, err := os.Stat("/probe-write"); err == nil {
		t.Error("the sandbox wrote to the host's root")
	}
}

func (s *suite) testPrivateTmp(t *testing.T) {
	r1, _ := s.runReport(t, nil)
	r2, _ := s.runReport(t, nil)
	if r1.WriteTmp != "ok" || r2.WriteTmp != "ok" {
		t.Fatalf("cannot write /tmp: %s, %s", r1.WriteTmp, r2.WriteTmp)
	}
	if len(r1.TmpEntries) != 0 || len(r2.TmpEntries) != 0 {
		t.Errorf("/tmp not empty at start: %v then %v", r1.TmpEntries, r2.TmpEntries)
	}
}

func (s *suite) testExited(t *testing.T) {
	a, out := newAPI(), &output{}
	spec := s.spec(a, out)
	spec.Command = []string{"/bin/sh", "-c", "echo hello-stdout; echo hello-stderr >&2; exit 7"}
	sb := s.create(t, spec)
	waitDone(t, sb, 10*time.Second)
	if sb.Err() == nil {
		t.Error("Err() = nil after exit 7")
	}
	if errors.Is(sb.Err(), sandbox.ErrOutOfMemory) {
		t.Errorf("Err() = %v wraps ErrOutOfMemory", sb.Err())
	}
	if err := sb.SyncOutput(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "hello-stdout\nhello-stderr\n" {
		t.Errorf("output %q", got)
	}
	if _, err := sb.Stats(); err != nil {
		t.Errorf("Stats after exit: %v", err)
	}
	destroy(t, sb)
	destroy(t, sb) // idempotent
	if st, err := sb.Stats(); err != nil {
		t.Errorf("Stats after Destroy: %v", err)
	} else {
		checkPeakReader(t, sb, st.MaxMemoryBytes)
	}
	if err := sb.SyncOutput(context.Background()); err != nil {
		t.Errorf("SyncOutput after Destroy: %v", err)
	}
}

func (s *suite) testSyncOutput(t *testing.T) {
	const n = 2000
	a := newAPI()
	out := &output{delay: 20 * time.Millisecond}
	sb := s.create(t, s.spec(a, out, "lines", fmt.Sprint(n)))
	select {
	case <-a.done:
	case <-sb.Done():
		t.Fatalf("sandbox ended: %v", sb.Err())
	case <-time.After(20 * time.Second):
		t.Fatal("probe never reported done")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sb.SyncOutput(ctx); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if got := out.String(); got != want.String() {
		t.Fatalf("after SyncOutput the output has %d of %d bytes (stdout and stderr merged in order)", len(got), want.Len())
	}
}

func (s *suite) testOOM(t *testing.T) {
	a, out := newAPI(), &output{}
	spec := s.spec(a, out, "alloc", "512")
	spec.MemoryMB = 64
	sb := s.create(t, spec)
	waitDone(t, sb, 30*time.Second)
	if !errors.Is(sb.Err(), sandbox.ErrOutOfMemory) {
		t.Errorf("Err() = %v, want it to wrap sandbox.ErrOutOfMemory", sb.Err())
	}
	st, err := sb.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.OOMKills == 0 {
		t.Error("Stats().OOMKills = 0")
	}
	checkPeakReader(t, sb, st.MaxMemoryBytes)
	// The kernel charges in batches and may overshoot the limit by a page
	// or so.
	if st.MaxMemoryBytes < 16<<20 || st.MaxMemoryBytes > 65<<20 {
		t.Errorf("Stats().MaxMemoryBytes = %d, want between 16 MiB and about the 64 MiB limit", st.MaxMemoryBytes)
	}
	if strings.Contains(out.String(), "allocated") {
		t.Error("the probe allocated 512 MiB under a 64 MiB limit")
	}
}

func (s *suite) testForkBomb(t *testing.T) {
	const tries = 5000
	a, out := newAPI(), &output{}
	spec := s.spec(a, out, "fork", fmt.Sprint(tries))
	spec.MemoryMB = 1024
	sb := s.create(t, spec)
	b := waitReport(t, sb, a, out)
	var r struct {
		Started int
		Err     string
		EAGAIN  bool
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Started >= tries || !r.EAGAIN {
		t.Fatalf("fork bomb not stopped by a process limit: started %d of %d, last error %s", r.Started, tries, r.Err)
	}
	t.Logf("fork bomb stopped after %d processes: %s", r.Started, r.Err)
	destroy(t, sb)
}

// MaxRuntimeAPIConns bounds the Runtime API connections (so descriptors
// and goroutines of the host) one sandbox may hold at once.
const MaxRuntimeAPIConns = 64

// testConnLimit: a sandbox opening hundreds of Runtime API connections,
// each with a request in flight, gets at most MaxRuntimeAPIConns served
// at once, and the host is back to normal afterwards.
func (s *suite) testConnLimit(t *testing.T) {
	a, out := newAPI(), &output{}
	spec := s.spec(a, out, "conns", "900")
	spec.MemoryMB = 512
	sb := s.create(t, spec)
	b := waitReport(t, sb, a, out)
	var r struct{ Opened int }
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	a.holdMu.Lock()
	maxHeld := a.maxHeld
	a.holdMu.Unlock()
	if maxHeld == 0 || maxHeld > MaxRuntimeAPIConns {
		t.Errorf("the host served %d held Runtime API requests at once (probe connected %d times), want 1..%d", maxHeld, r.Opened, MaxRuntimeAPIConns)
	}
	t.Logf("probe connected %d times, the host served %d at once", r.Opened, maxHeld)
	destroy(t, sb)
}

func (s *suite) testDestroy(t *testing.T) {
	m := "1000." + randomDigits(9)
	a, out := newAPI(), &output{}
	spec := s.spec(a, out)
	// A setsid grandchild, a double-forked one, and the runtime itself.
	spec.Command = []string{"/bin/sh", "-c",
		"(setsid /bin/sleep " + m + "1 &); (/bin/sh -c '/bin/sleep " + m + "2 &' &); exec /bin/sleep " + m + "3"}
	if s.opts.HostPids != nil {
		// Own kernel: the shell waits until it sees both sleepers in the
		// sandbox's /proc (a pattern that does not match grep itself).
		pat := strings.Replace(m, ".", "[.]", 1)
		spec.Command = []string{"/bin/sh", "-c",
			"(setsid /bin/sleep " + m + "1 &); (/bin/sh -c '/bin/sleep " + m + "2 &' &); " +
				"i=0; while [ $i -lt 500 ]; do n=0; for f in $(grep -ls '" + pat + "[12]' /proc/[0-9]*/cmdline); do " +
				"[ \"$(cat ${f%cmdline}comm 2>/dev/null)\" = sleep ] && n=$((n+1)); done; [ $n -ge 2 ] && break; sleep 0.05; i=$((i+1)); done; " +
				"echo sleepers-running $n; exec /bin/sleep " + m + "3"}
	}
	sb := s.create(t, spec)
	var hostPids []int
	if s.opts.HostPids != nil {
		if !polltest.Wait(Scaled(20*time.Second), func() bool {
			_ = sb.SyncOutput(context.Background())
			return strings.Contains(out.String(), "sleepers-running 2")
		}) {
			t.Fatalf("the sleepers never ran in the sandbox\noutput: %s", out)
		}
		hostPids = s.opts.HostPids(sb)
	} else if !polltest.Wait(Scaled(10*time.Second), func() bool { return len(procsWith(m)) == 3 }) {
		t.Fatalf("want 3 sleepers, have %v\noutput: %s", procsWith(m), out)
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			errs[i] = sb.Destroy(ctx)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("Destroy: %v", err)
		}
	}
	if left := procsWith(m); len(left) > 0 {
		t.Errorf("processes %v survived Destroy", left)
	}
	if left := alive(hostPids); len(left) > 0 {
		t.Errorf("host processes %v of the sandbox survived Destroy", left)
	}
	select {
	case <-sb.Done():
	default:
		t.Error("Done not closed after Destroy")
	}
	if sb.Err() == nil {
		t.Error("Err() = nil after Destroy")
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

func (s *suite) testRuntimeExit(t *testing.T) {
	// The grep pattern ("1000[.]...") does not match grep's own command line.
	m := "1000." + randomDigits(9)
	a, out := newAPI(), &output{}
	spec := s.spec(a, out)
	spec.Command = []string{"/bin/sh", "-c",
		"(setsid /bin/sleep " + m + " &); i=0; " +
			"while [ $i -lt 500 ] && ! grep -qs '" + strings.Replace(m, ".", "[.]", 1) + "' /proc/[0-9]*/cmdline; do sleep 0.01; i=$((i+1)); done; " +
			"[ $i -lt 500 ] && echo orphan-running; exit 3"}
	sb := s.create(t, spec)
	var hostPids []int
	if s.opts.HostPids != nil {
		hostPids = s.opts.HostPids(sb)
	}
	waitDone(t, sb, 10*time.Second)
	if err := sb.SyncOutput(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := alive(hostPids); len(left) > 0 {
		t.Errorf("host processes %v of the sandbox survive the runtime's exit after Done", left)
	}
	if !strings.Contains(out.String(), "orphan-running") {
		t.Fatalf("the orphan never ran; output %q", out)
	}
	if left := procsWith(m); len(left) > 0 {
		t.Errorf("orphans %v survive the runtime's exit after Done", left)
	}
	if sb.Err() == nil {
		t.Error("Err() = nil after the runtime exited")
	}
}

func (s *suite) testConcurrent(t *testing.T) {
	const n = 6
	var wg sync.WaitGroup
	type res struct {
		a   *api
		out *output
		sb  sandbox.Sandbox
		err error
	}
	results := make([]res, n)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			r.a, r.out = newAPI(), &output{}
			ctx, cancel := context.WithTimeout(context.Background(), Scaled(30*time.Second))
			defer cancel()
			r.sb, r.err = s.drv.Create(ctx, s.spec(r.a, r.out, "get", "/2018-06-01/runtime/invocation/next"))
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			t.Errorf("Create: %v", r.err)
			continue
		}
		t.Cleanup(func() { destroy(t, r.sb) })
	}
	for _, r := range results {
		if r.err != nil {
			continue
		}
		waitDone(t, r.sb, 20*time.Second)
		if err := r.sb.SyncOutput(context.Background()); err != nil {
			t.Error(err)
		}
		if !strings.Contains(r.out.String(), "200 "+r.a.token) {
			t.Errorf("sandbox %s got %q, want its own token %s", r.sb.ID(), r.out, r.a.token)
		}
	}
}

func (s *suite) testCreateFailure(t *testing.T) {
	a, out := newAPI(), &output{}
	spec := s.spec(a, out)
	spec.Command = []string{"/var/task/no-such-runtime"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if sb, err := s.drv.Create(ctx, spec); err == nil {
		destroy(t, sb)
		t.Fatal("Create with a missing runtime binary succeeded")
	} else if !strings.Contains(err.Error(), spec.ID) {
		t.Errorf("error %q does not name the sandbox %s", err, spec.ID)
	}
	// A cancelled context fails the create too, and the same id is free
	// again afterwards (nothing of the failed attempt is left).
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	id := spec.ID
	spec = s.spec(a, out, "get", "/2018-06-01/runtime/invocation/next")
	spec.ID = id
	if sb, err := s.drv.Create(cctx, spec); err == nil {
		destroy(t, sb)
		t.Error("Create with a cancelled context succeeded")
	}
	sb := s.create(t, spec)
	waitDone(t, sb, 20*time.Second)
	if err := sb.SyncOutput(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "200 "+a.token) {
		t.Errorf("re-using the id of a failed create: output %q", out)
	}
	if bad := (sandbox.Spec{ID: "bad id!", CodeDir: s.codeDir, Command: []string{"/bin/true"}, RuntimeAPI: a, MemoryMB: 128, EphemeralStorageMB: 64}); true {
		if sb, err := s.drv.Create(ctx, bad); err == nil {
			destroy(t, sb)
			t.Error("Create accepted an invalid id")
		}
	}
}

// checkPeakReader: a sandbox with the PeakMemoryReader ability reports
// the same peak as Stats (want; its processes have ended, so it is
// settled).
func checkPeakReader(t *testing.T, sb sandbox.Sandbox, want uint64) {
	t.Helper()
	pm, ok := sb.(sandbox.PeakMemoryReader)
	if !ok {
		return
	}
	got, err := pm.MaxMemoryBytes()
	if err != nil || got != want {
		t.Errorf("MaxMemoryBytes() = %d, %v; Stats().MaxMemoryBytes = %d", got, err, want)
	}
}
