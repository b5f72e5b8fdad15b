package cgroup

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrCloneIntoUnsupported is returned by Group.OpenDir when processes
// cannot be started directly in the group: on cgroup v1, or on a kernel
// (or seccomp profile) without clone3 and CLONE_INTO_CGROUP (Linux 5.7).
var ErrCloneIntoUnsupported = errors.New("cgroup: starting a process in a cgroup needs cgroup v2 and clone3 with CLONE_INTO_CGROUP")

// CanCloneInto reports whether a process can be started directly in a
// group of this Manager (syscall.SysProcAttr.UseCgroupFD with the
// descriptor of Group.OpenDir): cgroup v2, and a kernel whose clone3 knows
// CLONE_INTO_CGROUP. A process started that way never runs outside its
// group, and its start needs no migration (a write to cgroup.procs takes
// the kernel's cgroup_threadgroup_rwsem for writing, which stalls every
// fork, exec and thread creation on the host for an RCU grace period).
func (m *Manager) CanCloneInto() bool {
	return m.Version() == V2 && cloneIntoCgroup()
}

// cloneArgs is the kernel's struct clone_args up to its cgroup field
// (CLONE_ARGS_SIZE_VER2, Linux 5.7).
type cloneArgs struct {
	flags, pidfd, childTID, parentTID, exitSignal, stack, stackSize, tls, setTID, setTIDSize, cgroup uint64
}

// cloneIntoCgroup probes the kernel once. It calls clone3 with the
// version 2 argument size, a non-zero cgroup field and an invalid exit
// signal, so that no kernel ever creates a process: one without clone3
// (or a seccomp filter refusing it, as container runtimes' default
// profiles do) fails with ENOSYS (or EPERM); one whose clone3 predates the
// cgroup field refuses the non-zero bytes beyond what it knows (E2BIG); one
// that knows the field reads it and then refuses the exit signal (EINVAL).
var cloneIntoCgroup = sync.OnceValue(func() bool {
	args := cloneArgs{exitSignal: 1 << 8, cgroup: 1}
	_, _, errno := unix.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args), 0)
	return errno == unix.EINVAL
})

// OpenDir opens the group's directory for syscall.SysProcAttr.CgroupFD
// (O_PATH: the descriptor only names the cgroup). The caller closes it.
// It returns ErrCloneIntoUnsupported unless the Manager's CanCloneInto.
func (g *Group) OpenDir() (fd int, err error) {
	if g.version != V2 || !cloneIntoCgroup() {
		return -1, ErrCloneIntoUnsupported
	}
	for {
		fd, err = unix.Open(g.dirs[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return -1, fmt.Errorf("cgroup %s: open %s: %w", g.id, g.dirs[0], err)
	}
	return fd, nil
}
