package nsinit

import (
	"syscall"
	"unsafe"
)

// The init runs before most of the binary's packages are initialised (see
// early.go), so it uses only package syscall and a few helpers of its own
// here instead of os, fmt, strings, time and x/sys/unix.

// wrapError is an error with context: "msg: err".
type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *wrapError) Unwrap() error { return e.err }

// wrap returns err prefixed with msg.
func wrap(msg string, err error) error { return &wrapError{msg: msg, err: err} }

// isErrno reports whether err is (or wraps) errno.
func isErrno(err error, errno syscall.Errno) bool {
	for err != nil {
		if e, ok := err.(syscall.Errno); ok {
			return e == errno
		}
		w, ok := err.(*wrapError)
		if !ok {
			return false
		}
		err = w.err
	}
	return false
}

// itoa formats a non-negative int.
func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// nanotime is CLOCK_MONOTONIC in nanoseconds.
func nanotime() int64 {
	var ts syscall.Timespec
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Sec*1e9 + ts.Nsec
}

// join joins clean absolute paths (what the host sends).
func join(a, b string) string {
	for len(a) > 0 && a[len(a)-1] == '/' {
		a = a[:len(a)-1]
	}
	for len(b) > 0 && b[0] == '/' {
		b = b[1:]
	}
	return a + "/" + b
}

// dir is the parent of clean absolute path p.
func dir(p string) string {
	for i := len(p) - 1; i > 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return "/"
}

// mkdir is mkdir(2) with the path in its error.
func mkdir(p string, mode uint32) error {
	if err := syscall.Mkdir(p, mode); err != nil {
		return wrap("mkdir "+p, err)
	}
	return nil
}

// mkdirAll creates directory p and its missing parents.
func mkdirAll(p string, mode uint32) error {
	err := syscall.Mkdir(p, mode)
	if err == nil || err == syscall.EEXIST {
		return nil
	}
	if err != syscall.ENOENT || p == "/" {
		return wrap("mkdir "+p, err)
	}
	if err := mkdirAll(dir(p), mode); err != nil {
		return err
	}
	if err := syscall.Mkdir(p, mode); err != nil && err != syscall.EEXIST {
		return wrap("mkdir "+p, err)
	}
	return nil
}

// symlink is symlink(2) with the path in its error.
func symlink(target, p string) error {
	if err := syscall.Symlink(target, p); err != nil {
		return wrap("symlink "+p, err)
	}
	return nil
}

// createFile creates a new file p (it must not exist) holding data.
func createFile(p string, data string, mode uint32) error {
	fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, mode)
	if err != nil {
		return wrap("create "+p, err)
	}
	defer syscall.Close(fd)
	b := []byte(data)
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err != nil {
			return wrap("write "+p, err)
		}
		b = b[n:]
	}
	return nil
}

// writeExisting writes data to the existing file p (a /proc/sys knob).
func writeExisting(p string, data string) error {
	fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	_, err = syscall.Write(fd, []byte(data))
	return err
}

// stat is stat(2).
func stat(p string) (syscall.Stat_t, error) {
	var st syscall.Stat_t
	err := syscall.Stat(p, &st)
	return st, err
}

func isDir(st *syscall.Stat_t) bool     { return st.Mode&syscall.S_IFMT == syscall.S_IFDIR }
func isRegular(st *syscall.Stat_t) bool { return st.Mode&syscall.S_IFMT == syscall.S_IFREG }

// mount is mount(2) with what failed in its error.
func mount(src, dst, fstype string, flags uintptr, data string) error {
	return syscall.Mount(src, dst, fstype, flags, data)
}

// Arguments of move_mount(2) package syscall lacks (the same on every
// architecture).
const (
	atFDCWD             = -100
	moveMountFEmptyPath = 0x4
)

// moveMount attaches the detached mount tree fd (open_tree's, from the
// host) at dst: move_mount(fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH).
func moveMount(fd int, dst string) error {
	empty, err := syscall.BytePtrFromString("")
	if err != nil {
		return err
	}
	to, err := syscall.BytePtrFromString(dst)
	if err != nil {
		return err
	}
	cwd := atFDCWD
	_, _, e := syscall.Syscall6(sysMoveMount, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(cwd), uintptr(unsafe.Pointer(to)), moveMountFEmptyPath, 0)
	if e != 0 {
		return e
	}
	return nil
}

// ifreq is struct ifreq: an interface name and a union, of which the init
// uses the flags (short) and an IPv4 sockaddr.
type ifreq struct {
	name [syscall.IFNAMSIZ]byte
	data [24]byte
}

func newIfreq(name string) (*ifreq, error) {
	if len(name) >= syscall.IFNAMSIZ {
		return nil, wrap("interface "+name, syscall.EINVAL)
	}
	var r ifreq
	copy(r.name[:], name)
	return &r, nil
}

func (r *ifreq) flags() uint16     { return uint16(r.data[0]) | uint16(r.data[1])<<8 }
func (r *ifreq) setFlags(f uint16) { r.data[0], r.data[1] = byte(f), byte(f>>8) }
func (r *ifreq) setInet4(a [4]byte) {
	r.data = [24]byte{0: syscall.AF_INET, 4: a[0], 5: a[1], 6: a[2], 7: a[3]}
}

func ioctlIfreq(fd int, req uintptr, r *ifreq) error {
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(r)))
	if e != 0 {
		return e
	}
	return nil
}

// stderr writes msg to the init's standard error.
func stderr(msg string) { syscall.Write(2, []byte(msg)) }
