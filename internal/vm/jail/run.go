package jail

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/flintdev/flint/internal/privdrop"
)

// MaybeRun runs the jail helper (and never returns) when this process was
// started as one (os.Args[1] == Marker); otherwise it returns at once.
func MaybeRun() {
	if len(os.Args) > 1 && os.Args[1] == Marker {
		run()
	}
}

// run is the helper: build the root, wait for the go-ahead, drop
// privileges, exec. Any failure is written to stderr (the VMM's stderr,
// which the caller keeps) and ends the helper with status 125.
func run() {
	// Credentials set with raw system calls and execve are per thread:
	// stay on this one.
	runtime.LockOSThread()
	step := "read spec"
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "flint vmm jail: %s: %v\n", step, err)
		os.Exit(125)
	}
	if os.Getpid() != 1 {
		fail(errors.New("not started by jail.Prepare (pid != 1)"))
	}
	unix.CloseOnExec(helperFD)
	ctl := os.NewFile(helperFD, "jail-control")
	var n [4]byte
	if _, err := io.ReadFull(ctl, n[:]); err != nil {
		fail(err)
	}
	b := make([]byte, binary.BigEndian.Uint32(n[:]))
	if _, err := io.ReadFull(ctl, b); err != nil {
		fail(err)
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		fail(err)
	}
	if err := s.Validate(); err != nil {
		fail(err)
	}
	step = "root"
	if err := buildRoot(&s); err != nil {
		fail(err)
	}
	step = "wait for the go-ahead"
	var g [1]byte
	if _, err := io.ReadFull(ctl, g[:]); err != nil || g[0] != goByte {
		os.Exit(125) // the caller gave up (or died): nothing to report to
	}
	step = "cgroup namespace"
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		fail(err)
	}
	step = "limits"
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		fail(err) // a core dump would hold guest memory
	}
	if s.NoFile > 0 {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: s.NoFile, Max: s.NoFile}); err != nil {
			fail(err)
		}
	}
	step = "drop privileges"
	if err := privdrop.Drop(s.UID, s.GID); err != nil {
		fail(err)
	}
	// Drop re-armed the parent-death signal the credential change
	// cleared; make sure the caller did not die meanwhile (its end of the
	// pipe would be closed).
	fds := []unix.PollFd{{Fd: helperFD, Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, 0); err != nil || fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
		os.Exit(125)
	}
	step = "descriptors"
	// The caller's files move down one, onto 3 and up (the control pipe
	// at 3 goes); everything else is closed at exec.
	for i := 0; i < s.Files; i++ {
		if err := unix.Dup3(helperFD+1+i, helperFD+i, 0); err != nil {
			fail(err)
		}
	}
	_ = unix.CloseRange(uint(helperFD+s.Files), math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	step = "exec " + s.Path
	err := syscall.Exec(s.Path, s.Args, []string{})
	fail(err)
}

// buildRoot mounts a tmpfs on s.Root, fills it as s says, pivots into it
// and makes it read-only.
func buildRoot(s *Spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	r := s.Root
	if err := unix.Mount("tmpfs", r, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=256k,nr_inodes=4096,mode=0755"); err != nil {
		return fmt.Errorf("mount root: %w", err)
	}
	in := func(p string) string { return filepath.Join(r, p) }
	for _, d := range s.Dirs {
		if err := os.MkdirAll(in(d), 0o755); err != nil {
			return err
		}
	}
	for _, l := range s.Symlinks {
		if err := os.MkdirAll(filepath.Dir(in(l.Path)), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(l.Target, in(l.Path)); err != nil {
			return err
		}
	}
	for _, b := range s.Binds {
		if err := bind(b, in(b.Dst)); err != nil {
			return err
		}
	}
	if err := makeDev(in("/dev"), s); err != nil {
		return err
	}
	// pivot_root(".", "."): the old root ends up on top of the new one,
	// where it is detached at once.
	if err := unix.Chdir(r); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("remount root read-only: %w", err)
	}
	return nil
}

// bind bind-mounts b.Src at dst (created as an empty file or directory)
// with b's flags.
func bind(b Bind, dst string) error {
	fi, err := os.Stat(b.Src)
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if fi.IsDir() {
		err = os.Mkdir(dst, 0o755)
	} else {
		var f *os.File
		f, err = os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
		}
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := unix.Mount(b.Src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", b.Src, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID | unix.MS_NODEV)
	if b.Writable {
		flags |= unix.MS_NOEXEC
	} else {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s: %w", b.Dst, err)
	}
	return nil
}

// makeDev mounts a small tmpfs on dev and creates s's device nodes in it.
func makeDev(dev string, s *Spec) error {
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=4k,nr_inodes=16,mode=0755"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, d := range s.Devices {
		p := filepath.Join(dev, d.Name)
		mode := uint32(0o666)
		if d.Private {
			mode = 0o600
		}
		if err := unix.Mknod(p, unix.S_IFCHR|mode, int(unix.Mkdev(d.Major, d.Minor))); err != nil {
			return fmt.Errorf("mknod /dev/%s: %w", d.Name, err)
		}
		if err := unix.Chmod(p, mode); err != nil { // past the umask
			return err
		}
		if d.Private {
			if err := unix.Chown(p, s.UID, s.GID); err != nil {
				return err
			}
		}
	}
	return unix.Mount("", dev, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "size=4k,nr_inodes=16,mode=0755")
}
