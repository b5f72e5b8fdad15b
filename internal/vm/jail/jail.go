// Package jail starts a program — a virtual machine monitor — confined the
// way Firecracker's jailer confines Firecracker, so that a guest that
// escapes into its VMM finds almost nothing of the host:
//
//   - new mount, pid, ipc, uts and network namespaces (and a cgroup
//     namespace once the caller has put it in its cgroup);
//   - a root file system of its own: a small read-only tmpfs holding only
//     the bind mounts Spec lists (the program, its libraries, its firmware,
//     the guest kernel read-only; its own directory read-write, noexec), a
//     /dev with only the device nodes Spec lists, no /proc, /sys or /etc;
//   - an unprivileged uid and gid of its own, no supplementary groups, an
//     empty capability bounding set, no_new_privs, no core dumps;
//   - an empty environment and no descriptors but 0, 1 and 2.
//
// The jail is entered by a small helper: the caller's own binary,
// re-executed with Marker as its first argument (Go cannot run code
// between fork and exec). Every binary that starts jailed programs must
// therefore call MaybeRun first thing in main, and every test package
// doing so first thing in TestMain:
//
//	func TestMain(m *testing.M) {
//		jail.MaybeRun()
//		os.Exit(m.Run())
//	}
//
// The helper starts as root in the new namespaces, reads its Spec from a
// pipe, builds the root and pivots into it, then waits for the caller's
// go-ahead (Jail.Release: the caller has put its pid in a cgroup), enters
// a cgroup namespace, drops every privilege and executes the program,
// which keeps the helper's pid.
package jail

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/flintdev/flint/internal/vm/initramfs"
)

// Marker is the helper's first argument.
const Marker = "__flint_vmm_jail__"

// Bind makes a host path visible in the jail.
type Bind struct {
	// Src is the host path (a file or a directory), Dst its path in the
	// jail.
	Src, Dst string
	// Writable binds read-write, nosuid, nodev and noexec; otherwise
	// read-only, nosuid and nodev.
	Writable bool
}

// Device is a character device node created in the jail's /dev.
type Device struct {
	// Name is the node's name under /dev ("null", "kvm").
	Name         string
	Major, Minor uint32
	// Private makes the node mode 0600 owned by the jail's uid (/dev/kvm);
	// otherwise it is mode 0666 owned by root (/dev/null).
	Private bool
}

// Symlink is a symbolic link created in the jail (Debian's /lib ->
// usr/lib, a library's soname link).
type Symlink struct{ Path, Target string }

// Spec is what the helper builds and runs.
type Spec struct {
	// Root is an empty host directory: the helper mounts the jail's
	// tmpfs root on it in its own mount namespace only, so one directory
	// serves every jail at once.
	Root string
	// Dirs are directories created in the jail (mode 0755, root's);
	// parents of binds and links are created as needed.
	Dirs     []string
	Symlinks []Symlink
	Binds    []Bind
	Devices  []Device
	// UID and GID run the program (never 0).
	UID, GID int
	// Path is the program's path in the jail, Args its arguments
	// (Args[0] included).
	Path string
	Args []string
	// NoFile is the program's RLIMIT_NOFILE (0 leaves the inherited one).
	NoFile uint64
	// Files is how many descriptors the program inherits from 3 up
	// (set by Prepare from cmd.ExtraFiles).
	Files int
}

// Validate reports a Spec the helper would refuse.
func (s *Spec) Validate() error {
	switch {
	case s.UID <= 0 || s.GID <= 0:
		return fmt.Errorf("jail: uid %d and gid %d must not be root", s.UID, s.GID)
	case !filepath.IsAbs(s.Root):
		return fmt.Errorf("jail: Root %q must be absolute", s.Root)
	case !filepath.IsAbs(s.Path) || len(s.Args) == 0:
		return fmt.Errorf("jail: program %q must be an absolute path with Args", s.Path)
	}
	for _, b := range s.Binds {
		if !filepath.IsAbs(b.Src) || !filepath.IsAbs(b.Dst) {
			return fmt.Errorf("jail: bind %s -> %s: paths must be absolute", b.Src, b.Dst)
		}
	}
	for _, d := range s.Devices {
		if d.Name == "" || filepath.Base(d.Name) != d.Name {
			return fmt.Errorf("jail: device name %q", d.Name)
		}
	}
	return nil
}

// namespaces are those the helper is cloned into. The cgroup namespace
// comes later (the helper must be in its cgroup first).
const namespaces = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC |
	syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET

// helperFD is where the helper finds its control pipe.
const helperFD = 3

// goByte is the caller's go-ahead.
const goByte = 'G'

// Jail is the caller's side of one jailed program: Prepare, start the
// command, Release, and Close once the program has ended (or failed to
// start).
type Jail struct {
	r, w *os.File // the control pipe: the helper reads r, we write w
}

// Prepare rewrites cmd (whose Stdin, Stdout and Stderr are kept) to start
// the helper binary helper (normally /proc/self/exe, which must call
// MaybeRun) in new namespaces, running spec's program. cmd.ExtraFiles
// reach the program as descriptors 3, 4... (a tap device, a snapshot to
// restore: what it may use without reaching a path); cmd's own Path, Args,
// Env and SysProcAttr are replaced. After cmd.Start, the caller puts cmd's
// pid in its cgroup and calls Release; the program does not start before.
func Prepare(cmd *exec.Cmd, helper string, spec Spec) (*Jail, error) {
	spec.Files = len(cmd.ExtraFiles)
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("jail: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("jail: %w", err)
	}
	// The spec fits in the pipe's buffer (64 KiB): write it now.
	if len(b)+4 > 60<<10 {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("jail: spec of %d bytes is too large", len(b))
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(append(n[:], b...)); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("jail: %w", err)
	}
	cmd.Path = helper
	cmd.Args = []string{helper, Marker}
	cmd.Env = []string{}
	cmd.ExtraFiles = append([]*os.File{r}, cmd.ExtraFiles...) // fd 3 == helperFD
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: namespaces, Pdeathsig: syscall.SIGKILL}
	return &Jail{r: r, w: w}, nil
}

// Started closes the helper's end of the pipe in the caller (call it once
// cmd.Start returned, whatever it returned).
func (j *Jail) Started() {
	if j.r != nil {
		j.r.Close()
		j.r = nil
	}
}

// Release lets the helper drop its privileges and execute the program.
// An error means the helper is gone; its exit status and stderr say why.
func (j *Jail) Release() error {
	j.Started()
	if _, err := j.w.Write([]byte{goByte}); err != nil {
		return fmt.Errorf("jail: release: %w", err)
	}
	return nil
}

// Close releases the caller's end of the pipe. Until then the program can
// tell that its caller is alive (the helper refuses to start the program
// once the caller has died).
func (j *Jail) Close() {
	j.Started()
	if j.w != nil {
		j.w.Close()
		j.w = nil
	}
}

// AddTree adds the tree b describes (a program and its libraries, by
// initramfs.Builder.AddHostProgram): its directories and links as they
// are, each host file as a read-only bind at its path. Files b would build
// from bytes are refused.
func (s *Spec) AddTree(b *initramfs.Builder) error {
	return b.Walk(func(p string, mode fs.FileMode, host, target string) error {
		switch {
		case mode.IsDir():
			s.Dirs = append(s.Dirs, p)
		case mode&fs.ModeSymlink != 0:
			s.Symlinks = append(s.Symlinks, Symlink{Path: p, Target: target})
		case host != "":
			s.Binds = append(s.Binds, Bind{Src: host, Dst: p})
		default:
			return fmt.Errorf("jail: %s has no host file to bind", p)
		}
		return nil
	})
}
