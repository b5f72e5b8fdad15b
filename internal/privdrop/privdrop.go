// Package privdrop ends a privileged helper's privileges before it execs
// untrusted or confined code: the process driver's sandbox init and the
// microVM jail both call Drop on the thread that then execs.
package privdrop

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Drop empties the capability bounding set, switches the calling thread
// to uid/gid with no supplementary groups (which clears the remaining
// capabilities), sets no_new_privs so nothing executed later can regain
// any, and re-arms the parent-death signal (SIGKILL) that the credential
// change cleared. The caller has locked its OS thread and is about to
// exec from it.
func Drop(uid, gid int) error {
	for capNum := 0; capNum <= 63; capNum++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(capNum), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break // past CAP_LAST_CAP
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from bounding set: %w", capNum, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	// Raw system calls change the credentials of this thread only (Go's
	// wrappers stop the world to change every thread's): this thread is
	// the one that execs, and execve ends all the others, which only ever
	// run Go runtime code.
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", uid, e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	// A credential change clears the parent-death signal; restore it so
	// the process dies with its parent.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("pdeathsig: %w", err)
	}
	return nil
}
