package microvm_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/outputtest"
	"github.com/flintdev/flint/internal/polltest"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/microvm"
)

// jailedVM is a VM of TestVMMJail with what QEMU's /proc says about it.
type jailedVM struct {
	sb  *microvm.Sandbox
	out *outputtest.Buffer
	pid int
}

func (v *jailedVM) proc(name string) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(v.pid) + "/" + name)
	return string(b)
}

func field(status, key string) string {
	for _, l := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == key {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// cgroupDir is QEMU's cgroup directory for controller (v1) or the unified
// one, from /proc/<pid>/cgroup.
func (v *jailedVM) cgroupDir(controller string) string {
	unified := ""
	for _, l := range strings.Split(v.proc("cgroup"), "\n") {
		f := strings.SplitN(l, ":", 3)
		switch {
		case len(f) != 3:
		case slices.Contains(strings.Split(f[1], ","), controller):
			return filepath.Join("/sys/fs/cgroup", controller, f[2])
		case f[0] == "0" && f[1] == "":
			unified = filepath.Join("/sys/fs/cgroup", f[2])
		}
	}
	return unified
}

func readInt(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v", err)
		return -1
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1
	}
	n, _ := strconv.ParseInt(strings.Fields(s)[0], 10, 64)
	return n
}

// TestVMMJail: QEMU runs as a uid of its own per VM (two VMs at once get
// two), with no capabilities, no_new_privs and its own seccomp filter, an
// empty environment, none of the caller's descriptors, in namespaces of its
// own with a root holding only what it needs, in a cgroup of its own whose
// memory, pids and CPU limits follow the function's memory; the guest gets
// vCPUs in proportion to memory and /tmp as large as EphemeralStorageMB.
func TestVMMJail(t *testing.T) {
	d := newDriverWith(t, func(c *microvm.Config) { c.MaxVMs = 2 })
	// A descriptor the driver's process leaks by mistake.
	leak, err := syscall.Open("/etc/hostname", syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(leak)
	t.Setenv("FLINT_VMM_SECRET", "leaked")
	code := t.TempDir()
	script := "#!/bin/sh\necho cpus $(grep -c ^processor /proc/cpuinfo)\necho tmp $(grep ' /tmp ' /proc/mounts)\necho ready\nexec sleep 600\n"
	if err := os.WriteFile(filepath.Join(code, "bootstrap"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	mems := []int{128, microvm.MBPerVCPU + 1} // one vCPU; two
	vms := make([]*jailedVM, len(mems))
	errs := make(chan error, len(mems))
	for i, mem := range mems {
		go func() {
			out := &outputtest.Buffer{}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			sb, err := d.Create(ctx, sandbox.Spec{
				ID: fmt.Sprintf("jail-%d", i), CodeDir: code, Command: []string{"/var/task/bootstrap"},
				Env: []string{"PATH=/usr/bin:/bin"}, RuntimeAPI: http404{}, Output: out,
				MemoryMB: mem, EphemeralStorageMB: 100 + i,
			})
			if err == nil {
				vms[i] = &jailedVM{sb: sb.(*microvm.Sandbox), out: out, pid: sb.(*microvm.Sandbox).Pid()}
			}
			errs <- err
		}()
	}
	for range mems {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, v := range vms {
		if v != nil {
			defer v.sb.Destroy(context.Background())
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, v := range vms {
		if !polltest.Wait(time.Minute, func() bool {
			_ = v.sb.SyncOutput(context.Background())
			return strings.Contains(v.out.String(), "ready")
		}) {
			t.Fatalf("%s: output %q", v.sb.ID(), v.out.String())
		}
	}

	uids := map[string]bool{}
	for i, v := range vms {
		st := v.proc("status")
		uid, gid := field(st, "Uid"), field(st, "Gid")
		u, _ := strconv.Atoi(strings.Fields(uid + " x")[0])
		if u < microvm.DefaultVMMUID || u >= microvm.DefaultVMMUID+microvm.DefaultVMMUIDs || strings.Count(uid, strconv.Itoa(u)) != 4 {
			t.Errorf("%s: QEMU's Uid %q, want one uid of the VMM range", v.sb.ID(), uid)
		}
		g, _ := strconv.Atoi(strings.Fields(gid + " x")[0])
		if g-microvm.DefaultVMMGID != u-microvm.DefaultVMMUID {
			t.Errorf("%s: QEMU's Gid %q for Uid %q: want the gid at the same offset", v.sb.ID(), gid, uid)
		}
		uids[uid] = true
		for k, want := range map[string]string{
			"NoNewPrivs": "1", "Seccomp": "2", "Groups": "",
			"CapPrm": "0000000000000000", "CapEff": "0000000000000000", "CapBnd": "0000000000000000",
		} {
			if got := field(st, k); got != want {
				t.Errorf("%s: QEMU's %s = %q, want %q", v.sb.ID(), k, got, want)
			}
		}
		if env := v.proc("environ"); env != "" {
			t.Errorf("%s: QEMU's environment %q, want empty", v.sb.ID(), env)
		}
		// No descriptor of the host's files: QEMU's own (sockets, pipes,
		// eventfds, /dev/null...) and its jail's.
		fdDir := "/proc/" + strconv.Itoa(v.pid) + "/fd"
		ents, _ := os.ReadDir(fdDir)
		for _, e := range ents {
			target, _ := os.Readlink(filepath.Join(fdDir, e.Name()))
			if target == "/etc/hostname" || strings.HasPrefix(target, "/etc") || strings.HasPrefix(target, "/root") {
				t.Errorf("%s: QEMU holds fd %s -> %s", v.sb.ID(), e.Name(), target)
			}
		}
		for _, ns := range []string{"mnt", "pid", "net", "ipc", "uts", "cgroup"} {
			mine, _ := os.Readlink("/proc/self/ns/" + ns)
			its, _ := os.Readlink("/proc/" + strconv.Itoa(v.pid) + "/ns/" + ns)
			if its == "" || its == mine {
				t.Errorf("%s: QEMU's %s namespace %q, want its own", v.sb.ID(), ns, its)
			}
		}
		// Its root: no host directory beyond what it needs.
		root := "/proc/" + strconv.Itoa(v.pid) + "/root"
		for _, p := range []string{"/etc", "/proc", "/sys", "/home", "/root", "/tmp", "/var", "/usr/bin/env", "/bin/sh"} {
			if _, err := os.Lstat(root + p); err == nil {
				t.Errorf("%s: %s is visible to QEMU", v.sb.ID(), p)
			}
		}
		var points []string
		for _, l := range strings.Split(strings.TrimSpace(v.proc("mountinfo")), "\n") {
			f := strings.Fields(l)
			p, opts := f[4], f[5]
			points = append(points, p)
			switch {
			case p == "/vm":
				if !strings.HasPrefix(opts, "rw,nosuid,nodev,noexec") {
					t.Errorf("%s: /vm mounted %s", v.sb.ID(), opts)
				}
			case p == "/dev":
				if !strings.HasPrefix(opts, "ro,nosuid,noexec") {
					t.Errorf("%s: /dev mounted %s", v.sb.ID(), opts)
				}
			case !strings.HasPrefix(opts, "ro,nosuid,nodev"):
				t.Errorf("%s: %s mounted %s, want ro,nosuid,nodev", v.sb.ID(), p, opts)
			}
			if !(p == "/" || p == "/dev" || p == "/vm" || p == "/vmlinux" || p == "/initrd" || p == "/guest.ext4" || p == "/usr/share/qemu" ||
				strings.HasPrefix(p, "/usr/lib/") || strings.HasPrefix(p, "/usr/bin/qemu-system-") || strings.HasPrefix(p, "/lib")) {
				t.Errorf("%s: unexpected mount %s in QEMU's jail", v.sb.ID(), p)
			}
		}
		for _, p := range []string{"/vmlinux", "/initrd", "/guest.ext4", "/vm"} {
			if !slices.Contains(points, p) {
				t.Errorf("%s: QEMU's mounts %v lack %s", v.sb.ID(), points, p)
			}
		}

		// Its cgroup.
		mem := v.cgroupDir("memory")
		if !strings.Contains(mem, "/"+microvm.DefaultVMMCgroupParent) || !strings.HasSuffix(mem, "/"+v.sb.ID()) {
			t.Fatalf("%s: QEMU's memory cgroup %q, want .../%s/%s", v.sb.ID(), mem, microvm.DefaultVMMCgroupParent, v.sb.ID())
		}
		guest := int64(mems[i] + microvm.DefaultGuestOverheadMB)
		// cgroup v1 file names, else v2's.
		file := func(dir, v1, v2 string) string {
			if _, err := os.Stat(filepath.Join(dir, v1)); err == nil {
				return filepath.Join(dir, v1)
			}
			return filepath.Join(dir, v2)
		}
		limit := readInt(t, file(mem, "memory.limit_in_bytes", "memory.max"))
		if limit < (guest+microvm.DefaultVMMOverheadMB)<<20 || limit > (guest+512)<<20 {
			t.Errorf("%s: VMM memory limit %d MiB for a %d MiB guest", v.sb.ID(), limit>>20, guest)
		}
		if usage := readInt(t, file(mem, "memory.max_usage_in_bytes", "memory.peak")); usage <= 0 || usage > limit {
			t.Errorf("%s: VMM peak memory %d of limit %d", v.sb.ID(), usage, limit)
		} else {
			t.Logf("%s: VMM peak memory %d MiB of a %d MiB limit (guest %d MiB); %s threads", v.sb.ID(), usage>>20, limit>>20, guest, field(v.proc("status"), "Threads"))
		}
		if n := readInt(t, filepath.Join(v.cgroupDir("pids"), "pids.max")); n != microvm.DefaultVMMPidsMax {
			t.Errorf("%s: pids.max %d, want %d", v.sb.ID(), n, microvm.DefaultVMMPidsMax)
		}
		// 128 MB: one vCPU; 1770 MB: two (as many as the host has).
		wantCPUs := min(1+i, runtime.NumCPU())
		// v2's cpu.max is "quota period".
		quota := readInt(t, file(v.cgroupDir("cpu"), "cpu.cfs_quota_us", "cpu.max"))
		if quota <= 0 || quota > int64(wantCPUs)*100000 {
			t.Errorf("%s: cpu.cfs_quota_us %d, want a share of at most %d CPUs", v.sb.ID(), quota, wantCPUs)
		}
		if cmd := strings.ReplaceAll(v.proc("cmdline"), "\x00", " "); !strings.Contains(cmd, fmt.Sprintf(" -smp %d ", wantCPUs)) {
			t.Errorf("%s: QEMU's command line %q, want -smp %d", v.sb.ID(), cmd, wantCPUs)
		}
		online := fmt.Sprintf("cpus %d", wantCPUs)
		if !strings.Contains(v.out.String(), online+"\n") {
			t.Errorf("%s: the guest says %q, want %q", v.sb.ID(), v.out.String(), online)
		}
		if want := fmt.Sprintf("size=%dk", (100+i)*1024); !strings.Contains(v.out.String(), want) {
			t.Errorf("%s: the guest's /tmp: %q, want %s", v.sb.ID(), v.out.String(), want)
		}
	}
	if len(uids) != len(vms) {
		t.Errorf("QEMU uids %v: want one per VM", uids)
	}
	dirs := []string{vms[0].cgroupDir("memory"), vms[0].cgroupDir("pids")}
	if err := vms[0].sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("cgroup %s survives Destroy", dir)
		}
	}
}
