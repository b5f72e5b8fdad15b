// Package microvm is the microVM sandbox driver: every sandbox is its own
// QEMU "microvm" guest with Debian's cloud kernel and Flint's init
// (cmd/flint-vm-init) as PID 1, so the function's code never shares a
// kernel with the host or with another sandbox. See docs/sandbox-microvm.md.
//
// The guest has no network device. Its only link to the host is one
// virtio-serial port backed by a unix socket of the driver (protocol:
// internal/vm/vmchan): the Runtime API connections the runtime makes to
// 127.0.0.1:9001 in the guest are carried over it to Spec.RuntimeAPI, served
// on the host, and the runtime's output comes back over it.
//
// Every guest boots the same image (image.go): a small initramfs with the
// init, and a read-only root image with the programs and runtimes
// (rootfs.go). The function's directories (/var/task, /var/runtime, /opt)
// travel over the channel after boot; the init makes them read-only.
// Cold starts restore a snapshot of a booted, idle guest (snapshot.go).
//
// QEMU itself runs jailed, as Firecracker's jailer runs Firecracker
// (jail.go, package jail): a uid and gid of its own per VM, namespaces and
// a root holding only what it needs, a cgroup sized from the function's
// memory, QEMU's own seccomp filter.
package microvm

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/vm/kernel"
	"github.com/flintdev/flint/internal/vm/qemu"
)

// Defaults of Config.
const (
	// DefaultUID and DefaultGID are those of Lambda's sbx_user1051, as in
	// the process driver.
	DefaultUID = 993
	DefaultGID = 990
	// DefaultPidsMax bounds the tasks of the runtime's cgroup in the guest.
	DefaultPidsMax = 1024
	// DefaultMaxAPIConns bounds the Runtime API connections the host
	// serves per sandbox at a time.
	DefaultMaxAPIConns = 32
	// DefaultGuestOverheadMB is RAM the guest gets on top of the
	// function's MemorySize: the kernel, the init and the initramfs (which
	// holds the function's code) live there, outside the runtime's cgroup.
	DefaultGuestOverheadMB = 96
	// DefaultVMMUID and DefaultVMMGID run QEMU on the host: an
	// unprivileged user of its own, not root and not the process
	// driver's sandbox user.
	DefaultVMMUID = 64900
	DefaultVMMGID = 64900
	// DefaultEphemeralStorageMB sizes /tmp when Spec.EphemeralStorageMB
	// is 0 (Lambda's default).
	DefaultEphemeralStorageMB = 512
	// DefaultRestoreTimeout bounds a snapshot restore (QEMU start to the
	// guest's Ack) before Create falls back to a full boot.
	DefaultRestoreTimeout = 20 * time.Second
)

// DefaultHostPrograms are copied from the host into every guest, with
// their shared libraries: a shell and the few tools shell bootstraps use.
var DefaultHostPrograms = []string{
	"/bin/sh", "/bin/sleep", "/bin/cat", "/bin/grep", "/bin/true", "/bin/false",
	"/usr/bin/env", "/bin/ls", "/usr/bin/uname", "/usr/bin/setsid", "/usr/bin/head",
	"/usr/bin/tr", "/usr/bin/wc", "/bin/date", "/usr/bin/od",
}

// guestModules are what the init loads: the virtio-mmio transport, the
// console (virtio-serial) driver and the block driver (the root image).
var guestModules = []string{"virtio_mmio", "virtio_console", "virtio_blk"}

// Config configures the driver.
type Config struct {
	// QEMU is the qemu-system-x86_64 binary ("" finds it on PATH).
	QEMU string
	// Kernel is the guest kernel (kernel.Fetch). Required.
	Kernel *kernel.Kernel
	// InitPath is the static flint-vm-init binary, PID 1 of every guest.
	// Required.
	InitPath string
	// StateDir holds one directory per sandbox (its channel socket).
	// Required, absolute.
	StateDir string
	// ImageDir holds the guest image (kernel copy, initramfs, root image)
	// and the snapshots; it outlives the driver, and drivers with the same
	// configuration may share it (they build it once, under a lock).
	// Default: StateDir/image.
	ImageDir string
	// Runtimes are host interpreters put into the root image with their
	// libraries (nil: DefaultRuntimes; missing ones are skipped).
	Runtimes []string
	// NoSnapshots makes every cold start a full boot.
	NoSnapshots bool
	// Warmups are programs, by the interpreter a sandbox's Command starts
	// with, that a booted guest runs once before its snapshot is saved:
	// the interpreter's files are then in the snapshot's page cache, and
	// its sandboxes get a snapshot of their own, per VM size (nil:
	// DefaultWarmups; an empty map: one snapshot per VM size for all).
	Warmups map[string][]string
	// RestoreTimeout bounds a snapshot restore before the fallback to a
	// full boot (0: DefaultRestoreTimeout).
	RestoreTimeout time.Duration
	// Accel is the accelerator; "" probes KVM once in New and falls back
	// to TCG.
	Accel qemu.Accel
	// UID and GID run the function's code in the guest (never 0).
	UID, GID int
	// VMMUID and VMMGID are the first of VMMUIDs uids and gids (never
	// 0): each QEMU runs as one of its own, in a jail (package jail)
	// where it reaches only its binary, libraries and firmware, the
	// kernel (copied into StateDir), its sandbox's initramfs and channel
	// socket (in a directory it owns), and /dev/kvm under KVM.
	VMMUID, VMMGID, VMMUIDs int
	// JailerPath is the binary that enters the jail: "" re-executes this
	// one (/proc/self/exe), whose main (or TestMain) must then call
	// jail.MaybeRun first thing.
	JailerPath string
	// CgroupRoot is where cgroup file systems are mounted
	// ("/sys/fs/cgroup"); CgroupParent groups the VMMs' cgroups
	// (DefaultVMMCgroupParent).
	CgroupRoot, CgroupParent string
	// VMMOverheadMB is QEMU's own memory on top of the guest's RAM, the
	// kernel and initramfs and the TCG cache (DefaultVMMOverheadMB);
	// VMMPidsMax bounds its threads (DefaultVMMPidsMax).
	VMMOverheadMB, VMMPidsMax int
	// TCGCPUScale multiplies a sandbox's CPU share under TCG
	// (DefaultTCGCPUScale).
	TCGCPUScale int
	// PidsMax and MaxAPIConns are per-sandbox limits.
	PidsMax, MaxAPIConns int
	// GuestOverheadMB is added to MemoryMB for the VM's RAM.
	GuestOverheadMB int
	// TCGCacheMiB sizes each guest's TCG translation cache under TCG (0:
	// DefaultTCGCacheMiB; -1: QEMU's default, 1 GiB); see qemu.Config.
	TCGCacheMiB int
	// MaxVMs, when > 0, bounds the VMs running at once: Create waits (as
	// long as its ctx allows) for a running sandbox to end.
	MaxVMs int
	// HostPrograms are host programs copied into the guest (nil:
	// DefaultHostPrograms).
	HostPrograms []string
	// Logger receives per-step create timings and errors.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.UID == 0 {
		c.UID = DefaultUID
	}
	if c.GID == 0 {
		c.GID = DefaultGID
	}
	if c.VMMUID == 0 {
		c.VMMUID = DefaultVMMUID
	}
	if c.VMMGID == 0 {
		c.VMMGID = DefaultVMMGID
	}
	if c.VMMUIDs == 0 {
		c.VMMUIDs = DefaultVMMUIDs
	}
	if c.JailerPath == "" {
		c.JailerPath = "/proc/self/exe"
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = "/sys/fs/cgroup"
	}
	if c.CgroupParent == "" {
		c.CgroupParent = DefaultVMMCgroupParent
	}
	if c.VMMOverheadMB == 0 {
		c.VMMOverheadMB = DefaultVMMOverheadMB
	}
	if c.VMMPidsMax == 0 {
		c.VMMPidsMax = DefaultVMMPidsMax
	}
	if c.TCGCPUScale == 0 {
		c.TCGCPUScale = DefaultTCGCPUScale
	}
	if c.PidsMax == 0 {
		c.PidsMax = DefaultPidsMax
	}
	if c.MaxAPIConns == 0 {
		c.MaxAPIConns = DefaultMaxAPIConns
	}
	if c.GuestOverheadMB == 0 {
		c.GuestOverheadMB = DefaultGuestOverheadMB
	}
	if c.HostPrograms == nil {
		c.HostPrograms = DefaultHostPrograms
	}
	if c.Runtimes == nil {
		c.Runtimes = DefaultRuntimes
	}
	if c.Warmups == nil {
		c.Warmups = DefaultWarmups
	}
	if c.ImageDir == "" && c.StateDir != "" {
		c.ImageDir = filepath.Join(c.StateDir, "image")
	}
	if c.RestoreTimeout == 0 {
		c.RestoreTimeout = DefaultRestoreTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration error (after defaults are applied).
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case c.Kernel == nil:
		return errors.New("microvm: Kernel is required")
	case c.InitPath == "":
		return errors.New("microvm: InitPath (the flint-vm-init binary) is required")
	case c.StateDir == "" || !filepath.IsAbs(c.StateDir):
		return fmt.Errorf("microvm: StateDir %q must be an absolute path", c.StateDir)
	case !filepath.IsAbs(c.ImageDir):
		return fmt.Errorf("microvm: ImageDir %q must be an absolute path", c.ImageDir)
	case c.UID <= 0 || c.GID <= 0:
		return fmt.Errorf("microvm: UID %d and GID %d must not be root", c.UID, c.GID)
	case c.VMMUID <= 0 || c.VMMGID <= 0:
		return fmt.Errorf("microvm: VMMUID %d and VMMGID %d must not be root", c.VMMUID, c.VMMGID)
	case c.Accel != "" && c.Accel != qemu.TCG && c.Accel != qemu.KVM:
		return fmt.Errorf("microvm: unknown accelerator %q", c.Accel)
	case c.MaxVMs < 0 || c.PidsMax < 0 || c.MaxAPIConns < 0 || c.GuestOverheadMB < 0 || c.RestoreTimeout < 0 ||
		c.VMMUIDs < 0 || c.VMMOverheadMB < 0 || c.VMMPidsMax < 0 || c.TCGCPUScale < 0 || c.TCGCacheMiB < -1:
		return errors.New("microvm: negative limit")
	case int64(c.VMMUID)+int64(c.VMMUIDs) > 1<<31 || int64(c.VMMGID)+int64(c.VMMUIDs) > 1<<31:
		return fmt.Errorf("microvm: VMM uids %d+%d and gids %d+%d out of range", c.VMMUID, c.VMMUIDs, c.VMMGID, c.VMMUIDs)
	}
	return nil
}

// Driver creates microVM sandboxes. It is safe for concurrent use.
type Driver struct {
	cfg   Config
	qemu  string
	img   *guestImage
	snaps *snapshotStore // nil with NoSnapshots
	accel qemu.Accel     // chosen in New
	slots chan struct{}  // nil, or MaxVMs tokens
	// The VMMs' jail: what they share, and the empty directory every
	// jail's root is mounted on (in its own mount namespace).
	vmm      *vmmBase
	jailRoot string
}

var _ sandbox.Driver = (*Driver)(nil)

// New checks QEMU, chooses the accelerator (a KVM probe boot unless
// cfg.Accel says) and brings the guest image in ImageDir up to date
// (building the root image takes seconds the first time: see Setup).
func New(cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	bin := cfg.QEMU
	if bin == "" {
		bin = qemu.DefaultBinary
	}
	bin, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("microvm: QEMU not found (apt-get install qemu-system-x86): %w", err)
	}
	if _, err := os.Stat(cfg.JailerPath); err != nil {
		return nil, fmt.Errorf("microvm: the VMM jail helper: %w", err)
	}
	// QEMU reaches the image and its sandbox's directory through its
	// jail's binds: the directories stay root's.
	for _, dir := range []string{cfg.StateDir, cfg.ImageDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("microvm: %w", err)
		}
	}
	d := &Driver{cfg: cfg, qemu: bin, accel: cfg.Accel, jailRoot: filepath.Join(cfg.StateDir, "jail-root")}
	if err := os.Mkdir(d.jailRoot, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("microvm: %w", err)
	}
	if d.accel == "" {
		d.accel = qemu.TCG
		if ok, why := qemu.ProbeKVM(bin, cfg.Kernel.Vmlinux, 5*time.Second); ok {
			d.accel = qemu.KVM
		} else {
			cfg.Logger.Info("microvm: KVM unusable, guests run under TCG (slow)", "reason", why)
		}
	}
	t0 := time.Now()
	if d.img, err = buildImage(cfg, bin, d.accel); err != nil {
		return nil, err
	}
	cfg.Logger.Debug("microvm guest image ready", "dir", cfg.ImageDir, "digest", d.img.digest, "took", time.Since(t0))
	if !cfg.NoSnapshots {
		if d.snaps, err = newSnapshotStore(filepath.Join(cfg.ImageDir, "snapshots"), d.img.digest); err != nil {
			return nil, fmt.Errorf("microvm: snapshots: %w", err)
		}
	}
	if d.vmm, err = newVMMBase(cfg, bin, d.accel); err != nil {
		return nil, fmt.Errorf("microvm: the VMM jail: %w", err)
	}
	if cfg.MaxVMs > 0 {
		d.slots = make(chan struct{}, cfg.MaxVMs)
	}
	cfg.Logger.Debug("microvm sandbox driver ready", "accel", d.accel, "kernel", cfg.Kernel.Release)
	return d, nil
}

// Name implements sandbox.Driver.
func (d *Driver) Name() string { return "microvm" }

// Accel is the accelerator the driver's guests run under.
func (d *Driver) Accel() qemu.Accel { return d.accel }

var validID = regexp.MustCompile(`^[a-zA-Z0-9-]{1,64}$`)

func (d *Driver) validateSpec(spec *sandbox.Spec) error {
	switch {
	case !validID.MatchString(spec.ID):
		return fmt.Errorf("microvm: sandbox id %q must match [a-zA-Z0-9-]{1,64}", spec.ID)
	case spec.CodeDir == "":
		return fmt.Errorf("microvm: sandbox %s: no CodeDir", spec.ID)
	case len(spec.Command) == 0:
		return fmt.Errorf("microvm: sandbox %s: empty Command", spec.ID)
	case spec.RuntimeAPI == nil:
		return fmt.Errorf("microvm: sandbox %s: no RuntimeAPI", spec.ID)
	case spec.MemoryMB <= 0:
		return fmt.Errorf("microvm: sandbox %s: MemoryMB %d", spec.ID, spec.MemoryMB)
	}
	return nil
}

// KernelRelease is the guest kernel's release (uname -r in the guest).
func (d *Driver) KernelRelease() string { return d.cfg.Kernel.Release }
