//go:build linux

// Package guest is the inside of Flint's virtual machines: helpers for a
// guest's init (PID 1) to make its root file system, mount the kernel's
// file systems, load kernel modules, bring up loopback, run programs while
// reaping orphans, and power the machine off. It runs only inside a guest,
// never on the host: nothing here is imported by host code.
//
// The expected order at boot is:
//
//	ConsoleOnStdio   see output at all (the kernel may start init without fds)
//	MoveRootToTmpfs  leave the initramfs's rootfs, on which pivot_root fails
//	MountBasics      /proc /sys /dev /dev/shm /tmp
//	LoadModules      the module list the host resolved, dependencies first
//	LoopbackUp
//	...              the guest's work (Run)
//	Reboot           ends QEMU (reboot=t with -no-reboot)
package guest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ConsoleOnStdio mounts devtmpfs on /dev (if nothing is there yet) and
// makes /dev/console the init's stdin, stdout and stderr.
func ConsoleOnStdio() error {
	if err := os.MkdirAll("/dev", 0o755); err != nil {
		return err
	}
	if _, err := os.Stat("/dev/console"); err != nil {
		if err := unix.Mount("devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"); err != nil {
			return fmt.Errorf("guest: mount devtmpfs: %w", err)
		}
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("guest: open /dev/console: %w", err)
	}
	for i := 0; i <= 2; i++ {
		if err := unix.Dup3(fd, i, 0); err != nil {
			return fmt.Errorf("guest: console on fd %d: %w", i, err)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	return nil
}

// MoveRootToTmpfs moves every file of the initramfs (the kernel's rootfs)
// into a fresh tmpfs and makes that the root, as switch_root does: a
// sandbox in the guest needs pivot_root, which refuses to leave rootfs.
// Files are deleted from rootfs as they are copied, so memory use does not
// double. Mount points under / (such as /dev) are left behind.
func MoveRootToTmpfs() error {
	const newRoot = "/.newroot"
	if err := os.Mkdir(newRoot, 0o755); err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("guest: mount the new root: %w", err)
	}
	var rootDev uint64
	var st unix.Stat_t
	if err := unix.Lstat("/", &st); err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	rootDev = st.Dev
	ents, err := os.ReadDir("/")
	if err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	for _, e := range ents {
		p := "/" + e.Name()
		if p == newRoot {
			continue
		}
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("guest: %w", err)
		}
		if st.Dev != rootDev { // a mount point: recreate it empty
			if err := os.Mkdir(newRoot+p, 0o755); err != nil {
				return fmt.Errorf("guest: %w", err)
			}
			continue
		}
		if err := moveTree(p, newRoot+p); err != nil {
			return err
		}
	}
	if err := os.Chdir(newRoot); err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("guest: move the new root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("guest: chroot: %w", err)
	}
	return os.Chdir("/")
}

// moveTree copies src to dst (files, directories, symlinks) and removes
// each source file once copied.
func moveTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("guest: %w", err)
		}
		target := dst + strings.TrimPrefix(p, src)
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("guest: %w", err)
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, fi.Mode().Perm()); err != nil {
				return fmt.Errorf("guest: %w", err)
			}
			return os.Chmod(target, fi.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid))
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("guest: %w", err)
			}
			if err := os.Symlink(t, target); err != nil {
				return fmt.Errorf("guest: %w", err)
			}
		case d.Type().IsRegular():
			if err := copyFile(p, target, fi.Mode()); err != nil {
				return err
			}
		default:
			return nil // device nodes and the like: devtmpfs provides them
		}
		return os.Remove(p)
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("guest: copy %s: %w", src, err)
	}
	return os.Chmod(dst, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid))
}

// mount is one file system MountBasics mounts.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

var basics = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
}

// MountBasics mounts proc, sysfs, devtmpfs and tmpfs on /dev/shm, /tmp
// and /run, creating the mount points.
func MountBasics() error {
	for _, m := range basics {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("guest: %w", err)
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("guest: mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// MountCgroup2 mounts the unified cgroup hierarchy at dir and enables
// controllers (such as "memory", "pids", "cpu") for the root's children:
// the guest becomes a pure cgroup v2 host.
func MountCgroup2(dir string, controllers ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	if err := unix.Mount("cgroup2", dir, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("guest: mount cgroup2 on %s: %w", dir, err)
	}
	if len(controllers) == 0 {
		return nil
	}
	var add []string
	for _, c := range controllers {
		add = append(add, "+"+c)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(add, " ")), 0); err != nil {
		return fmt.Errorf("guest: enable cgroup controllers %v: %w", controllers, err)
	}
	return nil
}

// LoadModules loads the kernel modules at paths in order (dependencies
// first, as the host resolved them). A module already loaded is fine.
func LoadModules(paths []string) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("guest: %w", err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("guest: load module %s: %w", p, err)
		}
	}
	return nil
}

// LoopbackUp brings up the loopback interface.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("guest: flags of lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("guest: bring lo up: %w", err)
	}
	return nil
}

// Reboot flushes file systems and reboots the machine: with the kernel's
// reboot=t and QEMU's -no-reboot, QEMU exits. It returns only on failure.
func Reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}
