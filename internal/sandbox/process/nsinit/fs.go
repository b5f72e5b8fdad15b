package nsinit

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// in returns p inside the new root.
func (r *runner) in(p string) string { return join(r.cfg.Root, p) }

// join joins clean absolute paths (what the host sends). The init avoids
// package path/filepath: see early.go.
func join(a, b string) string {
	return strings.TrimSuffix(a, "/") + "/" + strings.TrimPrefix(b, "/")
}

// dir is the parent of clean absolute path p.
func dir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "/"
}

// buildRoot mounts the root tmpfs and fills it with what every sandbox
// shares: host system directories and /etc.
func (r *runner) buildRoot() error {
	c := r.cfg
	if err := unix.Mount("tmpfs", c.Root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,nr_inodes=4096,mode=0755"); err != nil {
		return fmt.Errorf("mount root tmpfs: %w", err)
	}
	for _, h := range c.Host {
		if h.Link != "" {
			if err := os.Symlink(h.Link, r.in(h.Path)); err != nil {
				return err
			}
			continue
		}
		if err := bindRO(h.Path, r.in(h.Path), true); err != nil {
			return err
		}
	}
	if err := os.Mkdir(r.in("/etc"), 0o755); err != nil {
		return err
	}
	for name, data := range c.EtcFiles {
		if err := os.WriteFile(r.in("/etc/"+name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	for _, p := range c.EtcBinds {
		if err := bindRO(p, r.in(p), true); err != nil {
			return err
		}
	}
	return nil
}

// mountCode attaches the function's directories (the detached mounts the
// host sent with the claim) and mounts its /tmp. The root is the sandbox's
// own already (pivotRoot ran when it was prepared) and still writable.
func (r *runner) mountCode() error {
	for i, dst := range r.claim.Mounts {
		fd := r.mountFDs[i]
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("attach %s: %w", dst, err)
		}
		unix.Close(fd)
	}
	r.mountFDs = nil
	if err := os.Mkdir("/tmp", 0o755); err != nil {
		return err
	}
	opts := "mode=1777,size=" + strconv.Itoa(r.claim.TmpMB) + "m"
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	return nil
}

// bindRO bind-mounts host path src read-only, nosuid and nodev at dst,
// creating dst (a directory or, for a file, an empty file) first.
func bindRO(src, dst string, create bool) error {
	if create {
		if err := mkTarget(src, dst); err != nil {
			return err
		}
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", src, err)
	}
	return nil
}

func mkTarget(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir(dst), 0o755); err != nil {
		return err
	}
	if st.IsDir() {
		err = os.Mkdir(dst, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			err = f.Close()
		}
	}
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	return err
}

// Paths of /proc hidden behind /dev/null, behind an empty read-only tmpfs,
// or made read-only (as container runtimes do).
var (
	procMaskFiles = []string{"kcore", "keys", "timer_list", "sched_debug", "sysrq-trigger", "latency_stats", "kallsyms", "kmsg", "config.gz", "vmallocinfo"}
	procMaskDirs  = []string{"acpi", "scsi", "asound", "driver"}
	procReadOnly  = []string{"sys", "bus", "fs", "irq"}
)

// mountProc mounts a proc of the sandbox's pid namespace and masks what
// could reveal or change the host.
func (r *runner) mountProc() error {
	p := r.in("/proc")
	if err := os.Mkdir(p, 0o555); err != nil {
		return err
	}
	if err := unix.Mount("proc", p, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	for _, f := range procMaskFiles {
		dst := join(p, f)
		if err := unix.Mount("/dev/null", dst, "", unix.MS_BIND, ""); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("mask /proc/%s: %w", f, err)
		}
	}
	for _, d := range procMaskDirs {
		dst := join(p, d)
		err := unix.Mount("tmpfs", dst, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("mask /proc/%s: %w", d, err)
		}
	}
	for _, d := range procReadOnly {
		dst := join(p, d)
		if err := bindRO(dst, dst, false); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("/proc/%s read-only: %w", d, err)
		}
	}
	return nil
}

// buildDev makes a minimal /dev: a few host device nodes, /dev/shm and the
// usual symlinks.
func (r *runner) buildDev() error {
	d := r.in("/dev")
	if err := os.Mkdir(d, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, n := range r.cfg.DevNodes {
		dst := join(d, n)
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount("/dev/"+n, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", n, err)
		}
	}
	shm := join(d, "shm")
	if err := os.Mkdir(shm, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=64m"); err != nil {
		return fmt.Errorf("mount /dev/shm: %w", err)
	}
	links := [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}}
	for _, l := range links {
		if err := os.Symlink(l[0], join(d, l[1])); err != nil {
			return err
		}
	}
	// Nothing may be added to /dev from now on.
	return unix.Mount("", d, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "")
}

// pivotRoot makes the new root the process's root and detaches the
// host's: from here on the init reaches nothing of the host's file system.
func (r *runner) pivotRoot() error {
	if err := unix.Chdir(r.cfg.Root); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the old root under the new one; unmounting
	// "." then detaches it without needing a directory for it.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// readOnlyRoot makes the root read-only (only /tmp and /dev/shm stay
// writable).
func readOnlyRoot() error {
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("remount root read-only: %w", err)
	}
	return nil
}
