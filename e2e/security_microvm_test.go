package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/polltest"
	"github.com/flintdev/flint/internal/sandbox/microvm"
	"github.com/flintdev/flint/internal/vm/kernel"
	"github.com/flintdev/flint/internal/vm/vmtest"
)

// TestSandboxSecurityMicroVM runs TestSandboxSecurity's hostile functions
// against flint server --sandbox-driver microvm: every attack is refused
// and the host's canaries are untouched, with the code in a guest of its
// own and QEMU jailed on the host. It needs QEMU and the guest kernel and
// runs with FLINT_TEST_MICROVM=1 (each cold start boots a VM under TCG
// here).
func TestSandboxSecurityMicroVM(t *testing.T) {
	if os.Getenv("FLINT_TEST_MICROVM") != "1" {
		t.Skip("FLINT_TEST_MICROVM=1 runs the adversarial suite against microVMs")
	}
	requireRoot(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skipf("QEMU is not installed (apt-get install qemu-system-x86): %v", err)
	}
	vmtest.Lock(t) // one VM-booting test binary at a time on the machine
	t.Setenv("FLINT_VM_CACHE", kernel.DefaultCacheDir())
	vmInit := filepath.Join(t.TempDir(), "flint-vm-init")
	gobuildtest.Build(t, "../cmd/flint-vm-init", vmInit)
	runSandboxSecurity(t, []string{"--sandbox-driver", "microvm", "--vm-init", vmInit})
}

// vmmPids lists the host processes of sandbox id's VMM (QEMU), from its
// cgroup under the microvm driver's parent.
func vmmPids(id string) []int {
	var pids []int
	for _, d := range cgroupDirs(id) {
		if !strings.Contains(d, "flint-vmm") {
			continue
		}
		for _, f := range strings.Fields(readCgroup(filepath.Join(d, "cgroup.procs"))) {
			if p, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, p) {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

// allVMMPids lists every running VMM of the microvm driver, by sandbox id.
func allVMMPids() map[int]string {
	out := map[int]string{}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/flint-vmm/*")
	more, _ := filepath.Glob("/sys/fs/cgroup/flint-vmm/*")
	for _, d := range append(dirs, more...) {
		for _, f := range strings.Fields(readCgroup(filepath.Join(d, "cgroup.procs"))) {
			if p, err := strconv.Atoi(f); err == nil {
				out[p] = filepath.Base(d)
			}
		}
	}
	return out
}

// sandboxOf is the sandbox id a probe reply ran in (its log stream ends
// with it).
func sandboxOf(r probeReply) string {
	_, id, _ := strings.Cut(r.Results["stream"], "]")
	return id
}

// cpuSeconds is the CPU time (user + system) process pid has used.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command's closing parenthesis; utime and stime
	// are the 14th and 15th of the whole line.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100 // USER_HZ
}

// tcgScale is the CPU share's multiplier the server's microvm driver uses
// (microvm.DefaultTCGCPUScale under TCG, 1 under KVM), from its log.
func tcgScale(log string) float64 {
	if strings.Contains(log, "accel=tcg") {
		return microvm.DefaultTCGCPUScale
	}
	return 1
}

// vmmLimits is Identity's check of the host side under the microvm
// driver: the function's own limits (128 MB, 1024 tasks) are the guest's
// (MemoryBomb, ForkBomb prove them); on the host, sandbox id's VMM has a
// cgroup holding the guest's RAM and QEMU's overhead, a few threads and a
// CPU share in proportion to memory (scaled under TCG). No host process
// runs the function; each VMM has a network namespace of its own.
func (e *secSuite) vmmLimits(t *testing.T, lim map[string]string, id string) {
	mem, _ := strconv.ParseInt(lim["memory.limit_in_bytes"]+lim["memory.max"], 10, 64)
	if guest := int64(128+microvm.DefaultGuestOverheadMB) << 20; mem <= guest || mem > guest+(512<<20) {
		t.Errorf("VMM memory limit %v, want the guest's %d MiB plus QEMU's overhead", lim, guest>>20)
	}
	if v, ok := lim["memory.memsw.limit_in_bytes"]; ok && v != lim["memory.limit_in_bytes"] {
		t.Errorf("VMM memory+swap limit %s, want the memory limit (no swap)", v)
	}
	if lim["pids.max"] != strconv.Itoa(microvm.DefaultVMMPidsMax) {
		t.Errorf("VMM pids.max %q, want %d", lim["pids.max"], microvm.DefaultVMMPidsMax)
	}
	quota, period := lim["cpu.cfs_quota_us"], lim["cpu.cfs_period_us"]
	if v, ok := lim["cpu.max"]; ok {
		quota, period, _ = strings.Cut(v, " ")
	}
	q, _ := strconv.ParseFloat(quota, 64)
	p, _ := strconv.ParseFloat(period, 64)
	want := min(1, 128.0/1769*tcgScale(e.s.log()))
	if p == 0 || q/p < want*0.9 || q/p > want*1.1 {
		t.Errorf("VMM CPU quota %s/%s, want %.3f of a CPU", quota, period, want)
	}
	secLog(t, "VMM cgroup limits (128 MB)", fmt.Sprintf("%v", lim))

	victim := probeCall(t, e.c, fnVictim, "", probeEvent{Action: "identity"})
	if a, b := netnsOf(fnProbe), netnsOf(fnVictim); len(a)+len(b) > 0 {
		t.Errorf("host processes run the functions: %v %v", a, b)
	}
	var seen []string
	for _, sb := range []string{id, sandboxOf(victim)} {
		pids := vmmPids(sb)
		if len(pids) != 1 {
			t.Fatalf("sandbox %s: VMM pids %v, want one", sb, pids)
		}
		ns, err := os.Readlink("/proc/" + strconv.Itoa(pids[0]) + "/ns/net")
		if err != nil || ns == e.hostNetns || slices.Contains(seen, ns) {
			t.Errorf("sandbox %s: VMM network namespace %q (%v); host %s, others %v: want its own", sb, ns, err, e.hostNetns, seen)
		}
		seen = append(seen, ns)
		e.sandboxNetns[ns] = true
	}
	secLog(t, "VMM network namespaces", fmt.Sprintf("host %s, VMMs %v; no host process runs the functions", e.hostNetns, seen))
}

// vmmCPU is CPU under the microvm driver. Driver-specific: the guest's
// own clock cannot see the host throttling its vCPU, so the share is
// measured on the host, as the VMM's CPU time over the probe's spin: at
// most its cgroup's quota (128/1769 of a CPU, times the TCG scale, at most
// one CPU per vCPU).
func (e *secSuite) vmmCPU(t *testing.T) {
	scale := tcgScale(e.s.log())
	var lines []string
	for _, fn := range []struct {
		name string
		mb   float64
	}{{fnProbe, 128}, {fnBig, 1769}} {
		id := sandboxOf(probeCall(t, e.c, fn.name, "", probeEvent{Action: "identity"}))
		pids := vmmPids(id)
		if len(pids) != 1 {
			t.Fatalf("%s: VMM pids %v", fn.name, pids)
		}
		c0, t0 := cpuSeconds(pids[0]), time.Now()
		r := probeCall(t, e.c, fn.name, "", probeEvent{Action: "cpu", Ms: 2000})
		share := (cpuSeconds(pids[0]) - c0) / time.Since(t0).Seconds()
		want := min(1, fn.mb/1769*scale)
		if share > want+0.15 {
			t.Errorf("%s (%v MB): its VMM used %.3f CPUs, want at most %.3f", fn.name, fn.mb, share, want)
		}
		lines = append(lines, fmt.Sprintf("%v MB: VMM %.3f CPUs (quota %.3f), guest sees %.3f", fn.mb, share, want, r.Value))
	}
	secLog(t, "CPU share (host side, TCG scale "+strconv.FormatFloat(scale, 'f', 0, 64)+")", strings.Join(lines, "; "))
}

// vmmSpin is SpinPastTimeout under the microvm driver. Driver-specific:
// the spinner runs in the guest, so it never shows on the host; the
// sandbox's VMM does, and must be gone once the invocation timed out.
func (e *secSuite) vmmSpin(t *testing.T, nonce string, before map[int]string, done chan *lambda.InvokeOutput) {
	spinVMM := map[int]string{}
	var out *lambda.InvokeOutput
	for out == nil {
		for p, id := range allVMMPids() {
			if _, ok := before[p]; !ok {
				spinVMM[p] = id
			}
		}
		if left := procsMatching(nonce); len(left) > 0 {
			t.Errorf("the guest's spinner shows on the host: %v", left)
		}
		select {
		case out = <-done:
		case <-time.After(50 * time.Millisecond):
		}
	}
	if et := errorType(out.Payload); et != "Sandbox.Timedout" {
		t.Errorf("spin: FunctionError %q payload %s, want Sandbox.Timedout", aws.ToString(out.FunctionError), out.Payload)
	}
	if len(spinVMM) == 0 {
		t.Errorf("never saw the spinning sandbox's VMM on the host")
	}
	polltest.Check(t, 15*time.Second, "the timed-out sandbox's VMM to die", func() error {
		for p := range spinVMM {
			if err := syscall.Kill(p, 0); err == nil {
				return fmt.Errorf("VMM %d of sandbox %s survives the timeout", p, spinVMM[p])
			}
		}
		return nil
	})
	secLog(t, "double fork + spin past 2 s", fmt.Sprintf("%s; nothing of it on the host but its VMM %v, gone after the timeout", errorType(out.Payload), spinVMM))
	e.innocent(t, "spin")
}
