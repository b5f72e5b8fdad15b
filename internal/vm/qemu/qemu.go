// Package qemu starts Linux guests under QEMU's minimal "microvm" machine:
// no PCI, no firmware, devices described to the kernel by ACPI, the kernel
// and initramfs loaded directly. It is what Flint's VM-based tests and the
// microVM sandbox driver launch guests with.
//
// The guest kernel's command line always carries the clock settings that
// make boots reliable under software emulation (TCG): tsc_early_khz=<the
// host's TSC kHz> tsc=reliable no_timer_check (without them about half the
// boots on a busy host hang in clock calibration). KVM is used only where a
// probe boot shows it works (ProbeKVM): on nested hypervisors such as PVM a
// stock kernel does not boot under KVM, and "-cpu host" fails outright.
//
// A VM is one QEMU process; its methods are safe for concurrent use.
package qemu

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// DefaultBinary is QEMU's x86-64 system emulator.
const DefaultBinary = "qemu-system-x86_64"

// Accel is a QEMU accelerator.
type Accel string

// The accelerators.
const (
	TCG Accel = "tcg" // software emulation: works everywhere, slowly
	KVM Accel = "kvm" // hardware virtualisation, with -cpu host
)

// Config describes one guest.
type Config struct {
	// Binary is the QEMU executable ("" means DefaultBinary on PATH).
	Binary string
	// Kernel is an uncompressed vmlinux with a PVH note (fastest) or a
	// bzImage; Initrd an optional initramfs.
	Kernel, Initrd string
	// Cmdline is appended to the kernel command line after BaseCmdline.
	Cmdline []string
	// MemoryMiB is the guest's RAM (0 means 256); CPUs its vCPUs (0 means 1).
	MemoryMiB, CPUs int
	// Accel is the accelerator ("" means TCG).
	Accel Accel
	// TCGCacheMiB, when > 0, sizes TCG's translation cache (tb-size); 0
	// leaves QEMU's default, which grows to most of an idle guest's host
	// memory.
	TCGCacheMiB int
	// Console receives everything the guest writes to its serial console
	// (ttyS0); nil discards it.
	Console io.Writer
	// Stderr receives QEMU's own messages; nil discards them.
	Stderr io.Writer
	// ExtraArgs are appended to QEMU's arguments (devices, chardevs).
	ExtraArgs []string
	// Credential, when set, runs QEMU as that user and group (with only
	// the supplementary groups it lists): the microVM driver's VMM runs
	// unprivileged. Every file QEMU opens must then be reachable by it.
	Credential *syscall.Credential
	// ExtraFiles are passed to QEMU as fds 3 and up (through Wrap's
	// helper too, package jail): a snapshot for "-incoming fd:3".
	ExtraFiles []*os.File
	// Wrap, when set, may rewrite the command before it starts (the
	// microVM driver starts QEMU through its jail, package jail); an error
	// fails Start.
	Wrap func(*exec.Cmd) error
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.Kernel == "" {
		return errors.New("qemu: Kernel is required")
	}
	if c.MemoryMiB < 0 || c.CPUs < 0 {
		return fmt.Errorf("qemu: negative MemoryMiB (%d) or CPUs (%d)", c.MemoryMiB, c.CPUs)
	}
	if c.Accel != "" && c.Accel != TCG && c.Accel != KVM {
		return fmt.Errorf("qemu: unknown accelerator %q", c.Accel)
	}
	return nil
}

// BaseCmdline is the start of every guest's kernel command line: the
// serial console, the clock settings (see the package doc; tscKHz 0 leaves
// tsc_early_khz out), a reboot that always ends QEMU (a triple fault, with
// -no-reboot) and a panic that reboots at once.
func BaseCmdline(tscKHz int) []string {
	args := []string{"console=ttyS0", "reboot=t", "panic=-1"}
	if tscKHz > 0 {
		args = append(args, "tsc_early_khz="+strconv.Itoa(tscKHz))
	}
	return append(args, "tsc=reliable", "no_timer_check")
}

// HostTSCkHz returns the host's TSC frequency in kHz, from
// /sys/devices/system/cpu/cpu0/tsc_freq_khz where the kernel exports it,
// else the first "cpu MHz" of /proc/cpuinfo.
func HostTSCkHz() (int, error) {
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && v > 0 {
			return v, nil
		}
	}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0, fmt.Errorf("qemu: host TSC frequency: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || mhz <= 0 {
				return 0, fmt.Errorf("qemu: host TSC frequency: bad cpu MHz %q", v)
			}
			return int(mhz * 1000), nil
		}
	}
	return 0, errors.New("qemu: host TSC frequency: no cpu MHz in /proc/cpuinfo")
}

// Args returns QEMU's command line for c (without the binary), with tscKHz
// as for BaseCmdline.
func (c Config) Args(tscKHz int) []string {
	mem, cpus := c.MemoryMiB, c.CPUs
	if mem == 0 {
		mem = 256
	}
	if cpus == 0 {
		cpus = 1
	}
	args := []string{
		"-M", "microvm", "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
		"-kernel", c.Kernel,
		"-append", strings.Join(append(BaseCmdline(tscKHz), c.Cmdline...), " "),
	}
	if c.Accel == KVM {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else if c.TCGCacheMiB > 0 {
		args = append(args, "-accel", "tcg,tb-size="+strconv.Itoa(c.TCGCacheMiB))
	} else {
		args = append(args, "-accel", "tcg")
	}
	if c.Initrd != "" {
		args = append(args, "-initrd", c.Initrd)
	}
	return append(args, c.ExtraArgs...)
}

// VM is a running QEMU process.
type VM struct {
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
	err  error // set before done closes
}

// Start launches the guest, with an empty environment and no descriptors
// but stdio. QEMU dies with the calling process (the parent-death signal),
// so a crashed test leaves no VM behind.
func Start(c Config) (*VM, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	bin := c.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	tsc, err := HostTSCkHz()
	if err != nil {
		tsc = 0 // the guest calibrates itself (slower, sometimes hangs under TCG)
	}
	cmd := exec.Command(bin, c.Args(tsc)...)
	cmd.Stdout, cmd.Stderr = c.Console, c.Stderr
	cmd.Env = []string{} // QEMU needs none of the caller's environment
	// Go sets the parent-death signal after the credential change, which
	// would otherwise clear it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: c.Credential}
	cmd.ExtraFiles = c.ExtraFiles
	if c.Wrap != nil {
		if err := c.Wrap(cmd); err != nil {
			return nil, fmt.Errorf("qemu: %w", err)
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu: start %s: %w", bin, err)
	}
	vm := &VM{cmd: cmd, done: make(chan struct{})}
	go func() {
		vm.err = cmd.Wait()
		close(vm.done)
	}()
	return vm, nil
}

// Pid is QEMU's process id.
func (vm *VM) Pid() int { return vm.cmd.Process.Pid }

// Done is closed when QEMU has exited and its console output is copied.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Wait waits for QEMU to exit and returns its exit error (nil when the
// guest powered off or rebooted).
func (vm *VM) Wait() error {
	<-vm.done
	if vm.err != nil {
		return fmt.Errorf("qemu (pid %d): %w", vm.cmd.Process.Pid, vm.err)
	}
	return nil
}

// Kill ends QEMU at once and waits for it; killing an exited VM is a no-op.
func (vm *VM) Kill() {
	vm.once.Do(func() {
		select {
		case <-vm.done:
		default:
			_ = vm.cmd.Process.Kill()
		}
	})
	<-vm.done
}
