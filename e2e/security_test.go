package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/flintdev/flint/internal/polltest"
)

// The functions of TestSandboxSecurity.
const (
	fnProbe    = "sec-probe"    // 128 MB, most attacks
	fnVictim   = "sec-victim"   // has a secret in its code and its /tmp
	fnBig      = "sec-big"      // 1769 MB (one vCPU), 512 MB /tmp
	fnSpin     = "sec-spin"     // 512 MB, 2 s timeout
	fnInnocent = "sec-innocent" // the aws-lambda-go test function
)

// secSuite is the state TestSandboxSecurity's subtests share: set up
// once, read-only afterwards (sandboxNetns is written by Identity only,
// subtests run one after the other).
type secSuite struct {
	c                   *lambda.Client
	s                   *flintServer
	h                   *hostCanaries
	data                string // the server's data dir
	probe               []byte // the probe binary
	serverPid           int
	ports               []int // the server's listening ports (API, NATS)
	envCanary, secret   string
	victimZip, probeZip []byte
	fdBaseline          int             // the server's descriptors before the first sandbox
	hostNetns           string          // "net:[inode]" of the host
	sandboxNetns        map[string]bool // network namespaces seen in use by sandboxes
	// vm: the server runs the microvm driver (TestSandboxSecurityMicroVM).
	// Probes that look for a sandbox's processes, cgroups or mounts on the
	// host look for its VMM there instead; the few that only make sense
	// for one driver say so where they branch.
	vm bool
}

// innocent invokes the innocent function, which must work, and checks the
// host canaries.
func (e *secSuite) innocent(t *testing.T, after string) {
	t.Helper()
	r := asReply(t, invoke(t, e.c, fnInnocent, map[string]any{"name": "after " + after}, false))
	if r.Hello != "after "+after {
		t.Errorf("innocent function after %s replied %+v", after, r)
	}
	e.h.check(t, after)
}

// secLog records one probe's outcome in the test log ("PROBE name:
// refused how | canary state").
func secLog(t *testing.T, probe, result string) {
	t.Helper()
	t.Logf("PROBE %-28s %s", probe+":", result)
}

// TestSandboxSecurity deploys hostile functions through Lambda's API and
// checks both sides of every attack: the probe was refused, and the host's
// canaries (a file, a process, a listener) are untouched; after each
// attack an innocent function on the same server still works. At the end
// nothing of the sandboxes is left on the host.
func TestSandboxSecurity(t *testing.T) {
	requireRoot(t)
	runSandboxSecurity(t, nil)
}

// runSandboxSecurity is TestSandboxSecurity against a server started with
// driverArgs; vmArgs non-nil means the microvm driver.
func runSandboxSecurity(t *testing.T, vmArgs []string) {
	probe := probeBinary(t)
	envCanary := "FLINT-ENV-CANARY-" + randHex(8)
	t.Setenv("FLINT_SECURITY_CANARY", envCanary)
	h := newHostCanaries(t)
	data := t.TempDir()
	s := startServer(t, data, vmArgs...)
	c := s.lambda()
	serverPid := s.cmd.Process.Pid
	ports := serverPorts(t, serverPid)
	if len(ports) < 2 {
		t.Fatalf("found the server's listening ports %v, want the API's and NATS's", ports)
	}

	secret := "FLINT-NEIGHBOUR-SECRET-" + randHex(12)
	victimZip := zipFiles(map[string]zipEntry{
		"bootstrap":  {data: probe, mode: 0o755},
		"secret.txt": {data: []byte(secret + "-code")},
	})
	probeZip := zipFiles(map[string]zipEntry{"bootstrap": {data: probe, mode: 0o755}})
	createZipFn(t, c, fnProbe, probeZip, 128, 30, 0)
	createZipFn(t, c, fnVictim, victimZip, 128, 30, 0)
	createZipFn(t, c, fnBig, probeZip, 1769, 60, 512)
	createZipFn(t, c, fnSpin, probeZip, 512, 2, 0)
	createGoFn(t, c, fnInnocent, nil)
	fdBaseline := countFDs(serverPid)
	hostNetns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	sandboxNetns := map[string]bool{} // network namespaces seen in use by sandboxes

	e := &secSuite{
		c: c, s: s, h: h, data: data, probe: probe, serverPid: serverPid, ports: ports,
		envCanary: envCanary, secret: secret, victimZip: victimZip, probeZip: probeZip,
		fdBaseline: fdBaseline, hostNetns: hostNetns, sandboxNetns: sandboxNetns, vm: vmArgs != nil,
	}

	t.Run("Identity", e.identity)
	t.Run("HostFiles", e.hostFiles)
	t.Run("Neighbour", e.neighbour)
	t.Run("Processes", e.processes)
	t.Run("Syscalls", e.syscalls)
	t.Run("Network", e.network)
	t.Run("Masks", e.masks)
	t.Run("SetuidZip", e.setuidZip)
	t.Run("SymlinkZip", e.symlinkZip)
	t.Run("ForkBomb", e.forkBomb)
	t.Run("FDs", e.fds)
	t.Run("RuntimeAPIFlood", e.runtimeAPIFlood)
	t.Run("FillTmp", e.fillTmp)
	t.Run("FillDevShm", e.fillDevShm)
	t.Run("MemoryBomb", e.memoryBomb)
	t.Run("CPU", e.cpu)
	t.Run("SpinPastTimeout", e.spinPastTimeout)
	t.Run("NoReuse", e.noReuse)

	// Nothing may be left: delete every function, wait for the server to
	// let go of its sandboxes' descriptors, stop it, and look for cgroups,
	// mounts and processes.
	fns := []string{fnProbe, fnVictim, fnBig, fnSpin, fnInnocent, "sec-suid"}
	for _, fn := range fns {
		_, err := c.DeleteFunction(ctxT(t, 30*time.Second), &lambda.DeleteFunctionInput{FunctionName: aws.String(fn)})
		var nf *types.ResourceNotFoundException
		if err != nil && !errors.As(err, &nf) { // not found: its subtest did not run
			t.Errorf("DeleteFunction %s: %v", fn, err)
		}
	}
	polltest.Check(t, 30*time.Second, "the server's descriptors to return to the baseline", func() error {
		if n := countFDs(serverPid); n > fdBaseline+2 {
			return fmt.Errorf("server has %d descriptors open, %d before the first sandbox", n, fdBaseline)
		}
		return nil
	})
	ids := sandboxIDs(s.log())
	if len(ids) == 0 {
		t.Errorf("found no sandbox id in the server log")
	}
	s.stop()
	var marks []string
	for _, fn := range fns {
		marks = append(marks, "AWS_LAMBDA_FUNCTION_NAME="+fn+"\x00")
	}
	if left := procsMatching(marks...); len(left) > 0 {
		t.Errorf("sandbox processes survive the server: %v", left)
	}
	for id := range ids {
		if d := cgroupDirs(id); len(d) > 0 {
			t.Errorf("cgroups of sandbox %s survive: %v", id, d)
		}
	}
	if len(mountsUnder("/sys")) == 0 {
		t.Errorf("mountsUnder sees no mount under /sys: the check below would be blind")
	}
	if m := mountsUnder(data); len(m) > 0 {
		t.Errorf("mounts under the data dir survive: %v", m)
	}
	// A killed sandbox's last processes may still be exiting (and holding
	// its namespace) for a moment after the server has stopped.
	for ns := range sandboxNetns {
		if err := polltest.Poll(10*time.Second, func() error {
			if held := netnsHolders(ns); len(held) > 0 {
				return fmt.Errorf("held by %v", held)
			}
			return nil
		}); err != nil {
			t.Errorf("sandbox network namespace %s survives: %v", ns, err)
		}
	}
	h.check(t, "the suite")
	secLog(t, "leftovers", fmt.Sprintf("%d sandboxes: no cgroup, process, mount, network namespace (%d checked) left; server fds back to %d", len(ids), len(sandboxNetns), fdBaseline))
}

func containsStr(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// identity: the runtime runs as 993/990 with no capabilities, no_new_privs and a seccomp filter, without the host environment or extra descriptors, on nosuid mounts, in cgroups with Lambda's limits and a network namespace of its own.
func (e *secSuite) identity(t *testing.T) {
	c := e.c
	envCanary := e.envCanary
	hostNetns := e.hostNetns
	sandboxNetns := e.sandboxNetns
	r := probeCall(t, c, fnProbe, "", probeEvent{Action: "identity"})
	if r.Results["uid"] != "993" || r.Results["euid"] != "993" || r.Results["gid"] != "990" || r.Results["groups"] != "[]" {
		t.Errorf("runs as uid %s euid %s gid %s groups %s, want 993/993/990/[]", r.Results["uid"], r.Results["euid"], r.Results["gid"], r.Results["groups"])
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if r.Status[k] != "0000000000000000" {
			t.Errorf("%s = %q, want none", k, r.Status[k])
		}
	}
	if r.Status["NoNewPrivs"] != "1" || r.Status["Seccomp"] != "2" {
		t.Errorf("NoNewPrivs %q Seccomp %q, want 1 and 2 (filter)", r.Status["NoNewPrivs"], r.Status["Seccomp"])
	}
	secLog(t, "identity", fmt.Sprintf("uid %s gid %s groups %s, CapEff %s CapBnd %s NoNewPrivs %s Seccomp %s",
		r.Results["uid"], r.Results["gid"], r.Results["groups"], r.Status["CapEff"], r.Status["CapBnd"], r.Status["NoNewPrivs"], r.Status["Seccomp"]))
	for _, kv := range r.Env {
		if strings.Contains(kv, envCanary) || strings.HasPrefix(kv, "FLINT_SECURITY_CANARY=") || strings.HasPrefix(kv, "HOME=") {
			t.Errorf("host environment leaked into the sandbox: %s", kv)
		}
	}
	secLog(t, "host env leak", fmt.Sprintf("canary env var absent among %d vars", len(r.Env)))
	// Only 0-2 may be inherited; the Go runtime's netpoller (an epoll
	// and an eventfd) opens its own before main's initialisers run.
	for _, fd := range r.InitFDs {
		n, target, _ := strings.Cut(fd, " -> ")
		if n != "0" && n != "1" && n != "2" && target != "anon_inode:[eventpoll]" && target != "anon_inode:[eventfd]" {
			t.Errorf("descriptor open at start beyond 0-2: %s (all: %v)", fd, r.InitFDs)
		}
	}
	if len(r.InitFDs) < 3 || len(r.InitFDs) > 5 {
		t.Errorf("open at start: %v", r.InitFDs)
	}
	secLog(t, "open fds at start", strings.Join(r.InitFDs, ", "))
	if r.Results["nofile"] != "1024/1024" {
		t.Errorf("RLIMIT_NOFILE = %s, want 1024/1024", r.Results["nofile"])
	}
	// Mount flags of what the function can write to or execute from.
	want := map[string][]string{"/var/task": {"ro", "nosuid", "nodev"}, "/tmp": {"nosuid", "nodev"}, "/": {"ro", "nosuid", "nodev"}, "/usr": {"ro", "nosuid", "nodev"}}
	if e.vm {
		delete(want, "/usr") // a directory of the guest's read-only root, not a mount of the host's /usr
	}
	for _, m := range r.Mounts {
		f := strings.Fields(m)
		if len(f) < 6 {
			continue
		}
		if flags, ok := want[f[4]]; ok {
			opts := "," + f[5] + ","
			for _, fl := range flags {
				if !strings.Contains(opts, ","+fl+",") {
					t.Errorf("%s is mounted %s, lacks %s", f[4], f[5], fl)
				}
			}
			delete(want, f[4])
		}
	}
	if len(want) != 0 {
		t.Errorf("mounts not found in the sandbox: %v\n%s", want, strings.Join(r.Mounts, "\n"))
	}

	// The limits, read from the host's cgroups of this sandbox.
	_, id, _ := strings.Cut(r.Results["stream"], "]")
	var lim map[string]string
	// A claimed sandbox's v1 cgroups are renamed after it in the
	// background, just after its claim: wait for the memory, pids and cpu
	// ones (all in one directory on v2).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		dirs := cgroupDirs(id)
		lim = map[string]string{}
		for _, d := range dirs {
			for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.max", "memory.swap.max", "pids.max", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.max"} {
				if v := readCgroup(filepath.Join(d, f)); v != "" {
					lim[f] = v
				}
			}
		}
		mem := lim["memory.limit_in_bytes"] != "" || lim["memory.max"] != ""
		cpu := lim["cpu.cfs_quota_us"] != "" || lim["cpu.max"] != ""
		if mem && cpu && lim["pids.max"] != "" || e.vm && len(dirs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			if len(dirs) == 0 {
				t.Fatalf("no cgroup found on the host for sandbox %q", id)
			}
			break
		}
	}
	if e.vm {
		e.vmmLimits(t, lim, id)
		return
	}
	mem := strconv.Itoa(128 << 20)
	if lim["memory.limit_in_bytes"] != mem && lim["memory.max"] != mem {
		t.Errorf("memory limit %v, want %s", lim, mem)
	}
	if v, ok := lim["memory.memsw.limit_in_bytes"]; ok && v != mem {
		t.Errorf("memory+swap limit %s, want %s (no swap)", v, mem)
	}
	if v, ok := lim["memory.swap.max"]; ok && v != "0" {
		t.Errorf("memory.swap.max %s, want 0", v)
	}
	if lim["pids.max"] != "1024" {
		t.Errorf("pids.max %q, want 1024", lim["pids.max"])
	}
	quota, period := lim["cpu.cfs_quota_us"], lim["cpu.cfs_period_us"]
	if v, ok := lim["cpu.max"]; ok {
		quota, period, _ = strings.Cut(v, " ")
	}
	q, _ := strconv.Atoi(quota)
	p, _ := strconv.Atoi(period)
	if p == 0 || float64(q)/float64(p) < 0.06 || float64(q)/float64(p) > 0.08 {
		t.Errorf("CPU quota %s/%s, want 128/1769 of a CPU (0.072)", quota, period)
	}
	secLog(t, "cgroup limits (128 MB)", fmt.Sprintf("%v", lim))

	// Each sandbox has a network namespace of its own.
	probeCall(t, c, fnVictim, "", probeEvent{Action: "identity"})
	a, b := netnsOf(fnProbe), netnsOf(fnVictim)
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("want one process per function, found %v and %v", a, b)
	}
	for _, pa := range a {
		for _, pb := range b {
			if pa == hostNetns || pb == hostNetns || pa == pb {
				t.Errorf("network namespaces: host %s, %s %s, %s %s; want three different", hostNetns, fnProbe, pa, fnVictim, pb)
			}
			sandboxNetns[pa], sandboxNetns[pb] = true, true
			if len(netnsHolders(pa)) == 0 {
				t.Errorf("netnsHolders does not see the live sandbox's namespace %s", pa)
			}
			secLog(t, "network namespaces", fmt.Sprintf("host %s, %s %s, %s %s", hostNetns, fnProbe, pa, fnVictim, pb))
		}
	}
}

// hostFiles: host files (/etc/shadow, the canary file) cannot be read or changed, directly, through /proc/1/root or through /var/task/..; the sandbox's own /etc and code are read-only.
func (e *secSuite) hostFiles(t *testing.T) {
	c := e.c
	h := e.h
	data := e.data
	r := probeCall(t, c, fnProbe, "", probeEvent{
		Action: "hostfiles",
		Paths:  []string{"/etc/shadow", h.file, filepath.Join(data, "flint.db"), "/etc/passwd"},
		Write:  []string{h.file, "/etc/passwd", "/var/task/bootstrap", "/proc/1/root" + h.file},
	})
	for _, f := range r.Found {
		if strings.Contains(f, h.content) || strings.Contains(f, "root:$") || (strings.HasPrefix(f, "/etc/shadow") || strings.Contains(f, "/etc/shadow:")) {
			t.Errorf("read a host file: %s", f)
		}
	}
	for k, v := range r.Results {
		if strings.HasPrefix(k, "read ") && strings.Contains(k, "passwd") {
			continue // the sandbox's own synthesized /etc/passwd
		}
		if v == "ok" {
			t.Errorf("%s succeeded", k)
		}
	}
	for _, f := range r.Found {
		if strings.Contains(f, "passwd:") && !strings.Contains(f, "sbx_user1051") {
			t.Errorf("/etc/passwd is not the sandbox's: %s", f)
		}
	}
	secLog(t, "read /etc/shadow", r.Results["read /etc/shadow"]+" (also via /proc/1/root: "+r.Results["read /proc/1/root/etc/shadow"]+")")
	secLog(t, "read host canary file", r.Results["read "+h.file]+", via /proc/1/root "+r.Results["read /proc/1/root"+h.file]+", via /var/task/../../.. "+r.Results["read /var/task/../../.."+h.file])
	secLog(t, "write host canary file", fmt.Sprintf("write %s chmod %s utime %s remove %s", r.Results["write "+h.file], r.Results["chmod "+h.file], r.Results["utime "+h.file], r.Results["remove "+h.file]))
	secLog(t, "write /etc/passwd, bootstrap", r.Results["write /etc/passwd"]+", "+r.Results["write /var/task/bootstrap"])
	e.innocent(t, "host files")
}

// neighbour: a function cannot find a warm neighbour's secrets (in its code, /tmp, /dev/shm, SysV shared memory, an abstract socket), neither by walking its file system and /proc nor by guessing the host's code paths. The victim finds its own, which proves the hunt works.
func (e *secSuite) neighbour(t *testing.T) {
	c := e.c
	data := e.data
	secret := e.secret
	victimZip := e.victimZip
	// The victim keeps a secret in its code and its /tmp and stays warm.
	v := probeCall(t, c, fnVictim, "", probeEvent{Action: "secret-write", Secret: secret + "-tmp"})
	if v.Results["write"] != "ok" || v.Results["/dev/shm"] != "ok" || v.Results["sysv shm"] != "ok" || v.Results["abstract socket"] != "ok" {
		t.Fatalf("victim could not write its /tmp: %v", v.Results)
	}
	// The hunt works: the victim finds its own secrets.
	self := probeCall(t, c, fnVictim, "", probeEvent{Action: "hunt", Secret: secret, Paths: []string{"/dev/shm/flint-secret"}})
	if self.Instance != v.Instance || !containsStr(self.Found, "/var/task/secret.txt") || !containsStr(self.Found, "/tmp/flint-secret") ||
		self.Results["sysv shm"] != "ok" || self.Results["abstract socket"] != "ok" || self.Results["read /dev/shm/flint-secret"] != "ok" {
		t.Fatalf("the hunt does not find the victim's own secrets (instance %s vs %s): %v", self.Instance, v.Instance, self.Found)
	}
	codeDirs, _ := filepath.Glob(filepath.Join(data, "code", "*"))
	sum := sha256.Sum256(victimZip)
	paths := []string{"/var/task/secret.txt", "/tmp/flint-secret", "/proc/1/root/tmp/flint-secret", "/dev/shm/flint-secret"}
	for _, d := range append(codeDirs, filepath.Join(data, "code", hex.EncodeToString(sum[:]))) {
		paths = append(paths, filepath.Join(d, "secret.txt"), "/proc/1/root"+filepath.Join(d, "secret.txt"), "/var/task/.."+filepath.Join(d, "secret.txt"))
	}
	r := probeCall(t, c, fnProbe, "", probeEvent{Action: "hunt", Secret: secret, Paths: paths})
	if r.Instance == v.Instance {
		t.Fatalf("attacker and victim share a sandbox")
	}
	if len(r.Found) != 0 {
		t.Errorf("attacker found the neighbour's secret at %v", r.Found)
	}
	if r.Count == 0 {
		t.Errorf("the hunt walked no file")
	}
	for k, res := range r.Results {
		if (strings.HasPrefix(k, "read ") || k == "sysv shm" || k == "abstract socket") && res == "ok" {
			t.Errorf("%s succeeded", k)
		}
	}
	// The victim's secret is still there: its sandbox was not disturbed.
	again := probeCall(t, c, fnVictim, "", probeEvent{Action: "hunt", Secret: secret})
	if !containsStr(again.Found, "/tmp/flint-secret") {
		t.Errorf("the victim lost its /tmp secret: %v", again.Found)
	}
	secLog(t, "neighbour code, /tmp, /dev/shm", fmt.Sprintf("0 finds in %d files + %s /proc entries; %d guessed paths (host code dir, /proc/1/root, /var/task/..): %s",
		r.Count, r.Results["procs"], len(paths), r.Results["read "+paths[len(paths)-2]]))
	secLog(t, "neighbour SysV shm, abstract socket", fmt.Sprintf("victim's: shmget %s, connect %s (the victim itself: %s, %s)", r.Results["sysv shm"], r.Results["abstract socket"], self.Results["sysv shm"], self.Results["abstract socket"]))
	e.innocent(t, "neighbour hunt")
}

// processes: the runtime is pid 1 of a pid namespace holding only itself; SIGKILL to pids 1..4096 and to host pids (the canary sleep, the server, the test, a warm neighbour) reaches nobody.
func (e *secSuite) processes(t *testing.T) {
	c := e.c
	h := e.h
	serverPid := e.serverPid
	// A warm neighbour: its host pid is one of the targets too.
	neighbour := probeCall(t, c, fnVictim, "", probeEvent{Action: "identity"})
	targets := []int{h.proc.Process.Pid, serverPid, os.Getpid()}
	for pid := range netnsOf(fnVictim) {
		n, _ := strconv.Atoi(pid)
		targets = append(targets, n)
	}
	if e.vm {
		// The neighbour's only host process is its VMM.
		targets = append(targets, vmmPids(sandboxOf(neighbour))...)
	}
	if len(targets) != 4 {
		t.Fatalf("want one process of the warm neighbour %s, targets %v", fnVictim, targets)
	}
	r := probeCall(t, c, fnProbe, "", probeEvent{Action: "kill", MaxPid: 4 << 10, Pids: targets})
	if r.Results["killed"] != "" {
		t.Errorf("probe signalled pids %s", r.Results["killed"])
	}
	if e.vm {
		// Driver-specific: in a microVM the runtime is not pid 1 and sees
		// the guest's init and kernel threads, which belong to this
		// sandbox alone; what matters above is that no host pid (the
		// neighbour's VMM among them) was reached.
		for _, p := range targets {
			if err := syscall.Kill(p, 0); err != nil {
				t.Errorf("pid %d is gone: %v", p, err)
			}
		}
	} else if r.Results["self"] != "1" {
		t.Errorf("the runtime is pid %s in its namespace, want 1", r.Results["self"])
	}
	for _, proc := range strings.Split(r.Results["visible"], ", ") {
		if e.vm {
			break
		}
		pid, _, _ := strings.Cut(proc, ":")
		if pid != "1" {
			t.Errorf("sees a process besides itself: %s", proc)
		}
	}
	if again := probeCall(t, c, fnVictim, "", probeEvent{Action: "identity"}); again.Instance != neighbour.Instance {
		t.Errorf("the warm neighbour did not survive: instance %s, then %s", neighbour.Instance, again.Instance)
	}
	secLog(t, "kill pids 1..4096 + host pids", fmt.Sprintf("killed none; visible /proc: %q; kill(host sleep) %s, kill(neighbour %d) %s, kill(-1) %s; neighbour still warm",
		r.Results["visible"], r.Results[fmt.Sprintf("kill %d", h.proc.Process.Pid)], targets[3], r.Results[fmt.Sprintf("kill %d", targets[3])], r.Results["kill -1"]))
	e.innocent(t, "kill")
}

// syscalls: privileged and escape-prone system calls fail (ptrace, mount, unshare, clone with namespaces, setns, raw and packet sockets, bpf, keyctl, io_uring, ...), also through the i386 (int 0x80) and x32 ABIs.
func (e *secSuite) syscalls(t *testing.T) {
	c := e.c
	r := probeCall(t, c, fnProbe, "", probeEvent{Action: "syscalls"})
	var lines []string
	for k, v := range r.Results {
		if v == "ok" {
			t.Errorf("%s succeeded", k)
		}
		lines = append(lines, k+"="+v)
	}
	if _, ok := r.Results["start child"]; ok {
		t.Errorf("could not start a child to trace: %s", r.Results["start child"])
	}
	sort.Strings(lines)
	secLog(t, "privileged syscalls", strings.Join(lines, "; "))
	abi := probeCall(t, c, fnProbe, "", probeEvent{Action: "abi"})
	for k, v := range abi.Results {
		if v == "ok" {
			t.Errorf("%s through a foreign ABI succeeded", k)
		}
	}
	secLog(t, "foreign ABIs (int 0x80, x32)", fmt.Sprint(abi.Results))
	e.innocent(t, "syscalls")
}

// network: nothing of the host is reachable from the sandbox's network namespace: not the canary listener, the Flint API, NATS (127.0.0.1 and ::1), an abstract unix socket, link-local metadata or any other address.
func (e *secSuite) network(t *testing.T) {
	c := e.c
	s := e.s
	h := e.h
	ports := e.ports
	addrs := []string{h.ln.Addr().String(), s.addr, "unix:" + h.unixLn.Addr().String()}
	for _, p := range ports {
		addrs = append(addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), net.JoinHostPort("::1", strconv.Itoa(p)))
	}
	addrs = append(addrs, "169.254.169.254:80", "10.0.0.1:80")
	r := probeCall(t, c, fnProbe, "", probeEvent{Action: "connect", Addrs: addrs})
	for _, a := range addrs {
		if r.Results[a] == "ok" || r.Results[a] == "" {
			t.Errorf("connect %s: %q", a, r.Results[a])
		}
	}
	secLog(t, "connect host ports", fmt.Sprintf("%v; canary listener accepts: %d", r.Results, h.accepts.Load()))
	e.innocent(t, "connect")
}

// masks: /proc's sensitive files are masked or absent, /proc/sys is read-only, /sys is not there.
func (e *secSuite) masks(t *testing.T) {
	c := e.c
	r := probeCall(t, c, fnProbe, "", probeEvent{Action: "masks"})
	var lines []string
	for k, v := range r.Results {
		lines = append(lines, k+"="+v)
		switch {
		case strings.HasPrefix(k, "read ") && strings.HasSuffix(v, "bytes"):
			t.Errorf("%s: %s", k, v)
		case strings.HasPrefix(k, "list ") && strings.HasSuffix(v, "entries") && !strings.HasPrefix(v, "0 "):
			t.Errorf("%s: %s", k, v)
		case strings.HasPrefix(k, "write ") && v == "ok" && k != "write /proc/sysrq-trigger":
			t.Errorf("%s succeeded", k)
		}
	}
	// What exists of the masked files must be a mount (of /dev/null):
	// /proc/sysrq-trigger's writes then go nowhere.
	id := probeCall(t, c, fnProbe, "", probeEvent{Action: "identity"})
	mounted := map[string]bool{}
	for _, m := range id.Mounts {
		if f := strings.Fields(m); len(f) > 4 {
			mounted[f[4]] = true
		}
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/kallsyms", "/proc/timer_list", "/proc/sched_debug", "/proc/kmsg", "/proc/sysrq-trigger"} {
		if e.vm {
			// The guest's /proc describes the guest kernel, not the host's:
			// what of it exists in the guest must be masked.
			if res := r.Results["read "+p]; res != "ENOENT" && !mounted[p] {
				t.Errorf("%s exists in the guest (read: %s) but is not masked", p, res)
			}
			continue
		}
		_, err := os.Stat(p) // on the host
		if err == nil && !mounted[p] {
			t.Errorf("%s exists on the host but is not masked in the sandbox", p)
		}
		if err != nil && r.Results["read "+p] != "ENOENT" {
			t.Errorf("%s does not exist on the host but the sandbox reads %s", p, r.Results["read "+p])
		}
	}
	sort.Strings(lines)
	secLog(t, "/proc masks", strings.Join(lines, "; "))
}
