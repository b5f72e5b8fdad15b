package process

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// fdTableSize is how many descriptors New makes room for in the process's
// descriptor table: a sandbox holds several (its output pipe, control
// socket, Runtime API listener and connections, cgroup stat files, pidfd),
// and a host runs up to a thousand sandboxes.
const fdTableSize = 8192

// growFDTable makes the kernel size the process's descriptor table for n
// descriptors (at most the RLIMIT_NOFILE soft limit) now, once, rather than
// during a burst of creations. The kernel grows the table by doubling, and
// each growth in a multi-threaded process waits for an RCU grace period
// while every thread of the process that opens a descriptor waits for it:
// with a burst of cold starts each doubling (64, 128, … 1024) stalled them
// all for milliseconds. The table never shrinks; n descriptors cost the
// kernel 8 bytes each.
func growFDTable(n int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n) {
		n = int(lim.Cur)
	}
	if n < 2 {
		return
	}
	// The lowest free descriptor at or above n-1 (F_DUPFD never
	// replaces one in use) makes the table at least that large; it is
	// closed at once.
	fd, err := unix.Open("/", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer syscall.Close(fd)
	if high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, n-1); err == nil {
		syscall.Close(high)
	}
}
