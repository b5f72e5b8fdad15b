//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// runtimeNoFile is the runtime's RLIMIT_NOFILE, Lambda's (as the process
// driver's).
const runtimeNoFile = 1024

// What the runtime's view of /proc hides, as the process driver's sandbox
// init does: the guest kernel's symbols, keys, timers and logs behind
// /dev/null, hardware directories behind an empty read-only tmpfs. The
// guest kernel runs only this sandbox, but its addresses would help an
// exploit of it.
var (
	procMaskFiles = []string{"kcore", "keys", "timer_list", "sched_debug", "sysrq-trigger", "latency_stats", "kallsyms", "kmsg", "config.gz", "vmallocinfo"}
	procMaskDirs  = []string{"acpi", "scsi", "asound", "driver"}
	devNodes      = []string{"null", "zero", "full", "random", "urandom"}
)

// confineView gives the launcher (and so the runtime) a mount namespace of
// its own in which the init's mounts stay but the runtime sees less: no
// /sys (the init's cgroup and sysfs), a masked /proc, a /dev with only the
// usual nodes and a 64 MiB /dev/shm, a root that is nosuid and nodev; and
// sets RLIMIT_NOFILE. It runs as root, before the launcher drops its
// privileges.
func confineView() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("private mounts: %w", err)
	}
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("hide /sys: %w", err)
	}
	for _, f := range procMaskFiles {
		if err := unix.Mount("/dev/null", "/proc/"+f, "", unix.MS_BIND, ""); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("mask /proc/%s: %w", f, err)
		}
	}
	for _, d := range procMaskDirs {
		err := unix.Mount("tmpfs", "/proc/"+d, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("mask /proc/%s: %w", d, err)
		}
	}
	if err := minimalDev(); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("root nosuid, nodev: %w", err)
	}
	return unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: runtimeNoFile, Max: runtimeNoFile})
}

// minimalDev stacks a small /dev over the guest's devtmpfs: the usual
// nodes (bound from it), /dev/shm (64 MiB, as the process driver's) and
// the fd links; read-only afterwards.
func minimalDev() error {
	// The guest's nodes stay reachable through descriptors while the new
	// /dev is built over them (the root is read-only: no room for a
	// temporary mount point).
	fds := make([]int, len(devNodes))
	for i, n := range devNodes {
		fd, err := unix.Open("/dev/"+n, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("/dev/%s: %w", n, err)
		}
		defer unix.Close(fd)
		fds[i] = fd
	}
	if err := unix.Mount("tmpfs", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for i, n := range devNodes {
		dst := filepath.Join("/dev", n)
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", fds[i]), dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", n, err)
		}
	}
	if err := os.Mkdir("/dev/shm", 0o755); err != nil {
		return err
	}
	if err := unix.Mount("shm", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=64m"); err != nil {
		return fmt.Errorf("mount /dev/shm: %w", err)
	}
	for _, l := range [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}} {
		if err := os.Symlink(l[0], filepath.Join("/dev", l[1])); err != nil {
			return err
		}
	}
	return unix.Mount("", "/dev", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "")
}
