// Package privdrop ends a privileged helper's privileges before it execs
// untrusted or confined code: the process driver's sandbox init and the
// microVM jail both call Drop on the thread that then execs.
//
// It uses package syscall only (no fmt, no x/sys/unix): the sandbox init
// runs before most packages of the Flint binary are initialised (see
// nsinit's early.go), and may call only into packages initialised by then.
package privdrop

import (
	"syscall"
	"unsafe"
)

// Constants package syscall lacks.
const (
	prSetNoNewPrivs      = 38
	prCapAmbient         = 47
	prCapAmbientClearAll = 4
	linuxCapabilityV3    = 0x20080522
)

// Error is a failed step of Drop.
type Error struct {
	Step string
	Err  error
}

func (e *Error) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func prctl(option, arg2 uintptr) syscall.Errno {
	_, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, option, arg2, 0, 0, 0, 0)
	return e
}

// Drop empties the capability bounding set, switches the calling thread
// to uid/gid with no supplementary groups (which clears the remaining
// capabilities), sets no_new_privs so nothing executed later can regain
// any, and re-arms the parent-death signal (SIGKILL) that the credential
// change cleared. The caller has locked its OS thread and is about to
// exec from it. Errors are *Error.
func Drop(uid, gid int) error {
	for capNum := 0; capNum <= 63; capNum++ {
		e := prctl(syscall.PR_CAPBSET_DROP, uintptr(capNum))
		if e == syscall.EINVAL {
			break // past CAP_LAST_CAP
		}
		if e != 0 {
			return &Error{"drop capability from bounding set", e}
		}
	}
	if e := prctl(prCapAmbient, prCapAmbientClearAll); e != 0 && e != syscall.EINVAL {
		return &Error{"clear ambient capabilities", e}
	}
	// Raw system calls change the credentials of this thread only (Go's
	// wrappers stop the world to change every thread's): this thread is
	// the one that execs, and execve ends all the others, which only ever
	// run Go runtime code.
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return &Error{"setgroups", e}
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return &Error{"setresgid", e}
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return &Error{"setresuid", e}
	}
	hdr := struct {
		version uint32
		pid     int32
	}{version: linuxCapabilityV3}
	var data [2]struct{ effective, permitted, inheritable uint32 }
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return &Error{"clear capabilities", e}
	}
	if e := prctl(prSetNoNewPrivs, 1); e != 0 {
		return &Error{"no_new_privs", e}
	}
	// A credential change clears the parent-death signal; restore it so
	// the process dies with its parent.
	if e := prctl(syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL)); e != 0 {
		return &Error{"pdeathsig", e}
	}
	return nil
}
