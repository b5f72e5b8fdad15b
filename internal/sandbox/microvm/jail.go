package microvm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process/cgroup"
	"github.com/flintdev/flint/internal/vm/initramfs"
	"github.com/flintdev/flint/internal/vm/jail"
	"github.com/flintdev/flint/internal/vm/qemu"
)

// The VMM's jail. QEMU runs through package jail: namespaces of its own, a
// root holding only its binary, libraries, firmware and TCG module, the
// guest kernel and its sandbox's directory; its own uid and gid from a
// range; a cgroup of its own (memory, pids, CPU); QEMU's own seccomp
// filter (-sandbox). See docs/sandbox-microvm.md, "The VMM's jail".

// Defaults of the jail's part of Config.
const (
	// DefaultVMMUIDs is how many uids (and gids) the VMMs take, from
	// VMMUID (VMMGID) up: one per running VM.
	DefaultVMMUIDs = 512
	// DefaultVMMCgroupParent groups the VMMs' cgroups.
	DefaultVMMCgroupParent = "flint-vmm"
	// DefaultVMMOverheadMB is what QEMU may use on top of the guest's RAM,
	// its ROM copies of the kernel and initramfs and its TCG translation
	// cache: its code, heap and threads.
	DefaultVMMOverheadMB = 64
	// DefaultVMMPidsMax bounds QEMU's threads.
	DefaultVMMPidsMax = 64
	// DefaultTCGCacheMiB is the TCG translation cache when
	// Config.TCGCacheMiB is 0: bounded, because it counts against the
	// VMM's memory limit (QEMU's own default is 1 GiB).
	DefaultTCGCacheMiB = 64
	// DefaultTCGCPUScale multiplies a sandbox's CPU share under TCG,
	// where every guest instruction costs several of the host's.
	DefaultTCGCPUScale = 10
	// MBPerVCPU is the memory size that buys one vCPU, as on Lambda (and
	// in the process driver).
	MBPerVCPU = 1769
	// vmmNoFile is QEMU's RLIMIT_NOFILE.
	vmmNoFile = 1024
)

// qemuSandbox is QEMU's own seccomp filter: its default deny list plus
// obsolete system calls, privilege changes, process creation and resource
// control (setpriority, sched_setaffinity...).
var qemuSandbox = []string{"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"}

// Paths in the jail.
const (
	jailKernel = "/vmlinux"
	jailInitrd = "/initrd"     // the guest image's initramfs
	jailRootfs = "/guest.ext4" // the guest's read-only root image
	jailVMDir  = "/vm"
)

// vmmBase is what every VMM's jail shares, prepared once by New.
type vmmBase struct {
	tree    jail.Spec // Dirs, Symlinks, Binds of QEMU, its libraries and data
	devices []jail.Device
	cgroups *cgroup.Manager
	uids    uidPool
}

// newVMMBase finds what QEMU needs for the accelerator and creates the
// cgroup parent.
func newVMMBase(cfg Config, bin string, accel qemu.Accel) (*vmmBase, error) {
	b := initramfs.New()
	if err := b.AddHostProgram(bin); err != nil {
		return nil, fmt.Errorf("QEMU's libraries: %w", err)
	}
	prefix := filepath.Dir(filepath.Dir(bin)) // /usr for /usr/bin/qemu-system-x86_64
	if accel == qemu.TCG {
		// Debian builds TCG as a module.
		mod := filepath.Join(prefix, "lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so")
		if _, err := os.Stat(mod); err == nil {
			if err := b.AddHostProgram(mod); err != nil {
				return nil, fmt.Errorf("QEMU's TCG module: %w", err)
			}
		}
	}
	v := &vmmBase{uids: uidPool{uid: cfg.VMMUID, gid: cfg.VMMGID, n: cfg.VMMUIDs, used: map[int]bool{}}}
	if err := v.tree.AddTree(b); err != nil {
		return nil, err
	}
	// Firmware (qboot, the PVH and linuxboot option ROMs).
	data := filepath.Join(prefix, "share/qemu")
	if _, err := os.Stat(data); err != nil {
		return nil, fmt.Errorf("QEMU's firmware directory: %w", err)
	}
	v.tree.Binds = append(v.tree.Binds, jail.Bind{Src: data, Dst: data})
	v.devices = []jail.Device{{Name: "null", Major: 1, Minor: 3}, {Name: "zero", Major: 1, Minor: 5},
		{Name: "urandom", Major: 1, Minor: 9}}
	if accel == qemu.KVM {
		var st syscall.Stat_t
		if err := syscall.Stat("/dev/kvm", &st); err != nil {
			return nil, fmt.Errorf("/dev/kvm: %w", err)
		}
		v.devices = append(v.devices, jail.Device{Name: "kvm", Major: unixMajor(st.Rdev), Minor: unixMinor(st.Rdev), Private: true})
	}
	cg, err := cgroup.New(cgroup.Config{Root: cfg.CgroupRoot, Parent: cfg.CgroupParent})
	if err != nil {
		return nil, fmt.Errorf("the VMMs' cgroups: %w", err)
	}
	v.cgroups = cg
	return v, nil
}

func unixMajor(dev uint64) uint32 { return uint32((dev>>8)&0xfff) | uint32((dev>>32)&^0xfff) }
func unixMinor(dev uint64) uint32 { return uint32(dev&0xff) | uint32((dev>>12)&^0xff) }

// uidPool hands out the VMMs' uids (and gids, at the same offset), each to
// one VM at a time, round robin so that a uid just freed is the last to be
// used again.
type uidPool struct {
	uid, gid, n int
	mu          sync.Mutex   // guards the fields below
	next        int          // offset to try first
	used        map[int]bool // offsets in use
}

func (p *uidPool) get() (off int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; i < p.n; i++ {
		off := (p.next + i) % p.n
		if !p.used[off] {
			p.used[off] = true
			p.next = (off + 1) % p.n
			return off, nil
		}
	}
	return 0, fmt.Errorf("all %d VMM uids (%d-%d) are in use", p.n, p.uid, p.uid+p.n-1)
}

func (p *uidPool) put(off int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, off)
}

// vmmJail is one VM's jail, from Create's "jail" step until the VM has
// ended.
type vmmJail struct {
	d        *Driver
	off      int // in the uid pool; -1 when returned
	uid, gid int
	group    *cgroup.Group
	j        *jail.Jail
	cpu      int64 // CPU millis after boot
}

// vcpus is the number of vCPUs for a function of memMB: one per MBPerVCPU
// started, at most the host's CPUs.
func vcpus(memMB int) int {
	return max(1, min(runtime.NumCPU(), (memMB+MBPerVCPU-1)/MBPerVCPU))
}

// cpuMillis is the VMM's CPU share once the guest has booted: in
// proportion to memory as on Lambda (1000 per MBPerVCPU), scaled under
// TCG, at most one CPU per vCPU.
func (d *Driver) cpuMillis(memMB int) int64 {
	m := int64(memMB) * 1000 / MBPerVCPU
	if d.accel == qemu.TCG {
		m *= int64(d.cfg.TCGCPUScale)
	}
	return max(10, min(m, int64(vcpus(memMB))*1000))
}

// tcgCacheMiB is the translation cache QEMU gets (0 under KVM).
func (d *Driver) tcgCacheMiB() int {
	switch {
	case d.accel != qemu.TCG:
		return 0
	case d.cfg.TCGCacheMiB == 0:
		return DefaultTCGCacheMiB
	}
	return d.cfg.TCGCacheMiB
}

// vmmMemoryMiB is the VMM's memory limit: the guest's RAM, QEMU's ROM
// copies of the kernel and the initramfs, the translation cache and
// VMMOverheadMB.
func (d *Driver) vmmMemoryMiB(guestMiB int, initrd string) (int64, error) {
	var size int64
	for _, f := range []string{d.img.kernel, initrd} {
		fi, err := os.Stat(f)
		if err != nil {
			return 0, err
		}
		size += fi.Size()
	}
	tcg := d.tcgCacheMiB()
	if tcg < 0 {
		tcg = 1024 // QEMU's default
	}
	return int64(guestMiB) + (size+1<<20-1)>>20 + int64(tcg) + int64(d.cfg.VMMOverheadMB), nil
}

// newJail takes a uid for spec's VM.
func (d *Driver) newJail() (*vmmJail, error) {
	off, err := d.vmm.uids.get()
	if err != nil {
		return nil, err
	}
	p := &d.vmm.uids
	return &vmmJail{d: d, off: off, uid: p.uid + off, gid: p.gid + off}, nil
}

// cgroup creates the VM's cgroup: memory for the guest and QEMU, pids; the
// CPU is limited only once the guest has booted (limitCPU).
func (j *vmmJail) cgroup(spec *sandbox.Spec, guestMiB int, initrd string) error {
	mem, err := j.d.vmmMemoryMiB(guestMiB, initrd)
	if err != nil {
		return err
	}
	j.cpu = j.d.cpuMillis(spec.MemoryMB)
	j.group, err = j.d.vmm.cgroups.Create(spec.ID, cgroup.Limits{MemoryBytes: mem << 20, Pids: int64(j.d.cfg.VMMPidsMax)})
	return err
}

// wrap is qemu.Config.Wrap: QEMU's command becomes the jail helper's.
func (j *vmmJail) wrap(sbDir string) func(*exec.Cmd) error {
	return func(cmd *exec.Cmd) error {
		d := j.d
		spec := d.vmm.tree
		spec.Binds = append(append([]jail.Bind(nil), spec.Binds...),
			jail.Bind{Src: d.img.kernel, Dst: jailKernel},
			jail.Bind{Src: d.img.initrd, Dst: jailInitrd},
			jail.Bind{Src: d.img.rootfs, Dst: jailRootfs},
			jail.Bind{Src: sbDir, Dst: jailVMDir, Writable: true})
		spec.Devices = d.vmm.devices
		spec.Root = d.jailRoot
		spec.UID, spec.GID = j.uid, j.gid
		spec.Path, spec.Args = cmd.Path, cmd.Args
		spec.NoFile = vmmNoFile
		var err error
		j.j, err = jail.Prepare(cmd, d.cfg.JailerPath, spec)
		return err
	}
}

// restart forgets a helper whose QEMU has ended (a failed snapshot
// restore), so that wrap can prepare the next one.
func (j *vmmJail) restart() {
	if j.j != nil {
		j.j.Close()
		j.j = nil
	}
}

// started puts the started helper (pid) in the VM's cgroup and lets it
// start QEMU.
func (j *vmmJail) started(pid int) error {
	j.j.Started()
	if err := j.group.Add(pid); err != nil {
		return err
	}
	return j.j.Release()
}

// limitCPU applies the CPU share: the boot ran at full speed.
func (j *vmmJail) limitCPU() error { return j.group.SetCPU(j.cpu) }

// close undoes the jail once QEMU has ended (or never started): the
// cgroup, the uid, the helper's pipe. It is idempotent.
func (j *vmmJail) close() error {
	if j == nil {
		return nil
	}
	if j.j != nil {
		j.j.Close()
	}
	var err error
	if j.group != nil {
		err = j.group.Destroy(time.Now().Add(5 * time.Second))
		j.group = nil
	}
	if j.off >= 0 {
		j.d.vmm.uids.put(j.off)
		j.off = -1
	}
	return err
}

// RemoveStale removes the VMM cgroups a previous run of Flint left behind
// when it died (its VMs died with it: QEMU has the parent-death signal).
// Call it at start-up, before the first Create, and only when no other
// process uses the same CgroupParent. It returns how many it removed.
func (d *Driver) RemoveStale() (int, error) {
	n, err := d.vmm.cgroups.RemoveStale(time.Now().Add(5 * time.Second))
	if err != nil {
		return n, fmt.Errorf("microvm: remove stale VMM cgroups: %w", err)
	}
	return n, nil
}

// Close removes the VMMs' cgroup parent once no VM is left in it (destroy
// the sandboxes first).
func (d *Driver) Close() { d.vmm.cgroups.RemoveParents() }
