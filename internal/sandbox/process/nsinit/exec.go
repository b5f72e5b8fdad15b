package nsinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// execRuntime drops every privilege and replaces the init with the
// runtime. It only returns on failure.
func (r *runner) execRuntime() error {
	c, cl := r.cfg, r.claim
	steps := []struct {
		name string
		f    func() error
	}{
		// The cgroup namespace is created only now, after the host moved
		// us into the sandbox's cgroups, so that it is rooted there.
		{"cgroupns", func() error { return unix.Unshare(unix.CLONE_NEWCGROUP) }},
		{"rlimits", func() error {
			return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: c.NoFile, Max: c.NoFile})
		}},
		{"chdir", func() error { return unix.Chdir("/var/task") }},
		{"drop-privileges", func() error { return dropPrivileges(c.UID, c.GID) }},
		{"seccomp", func() error { return loadSeccomp(c.Seccomp) }},
	}
	r.timings = r.timings[:0]
	for _, s := range steps {
		if err := r.run(s.name, s.f); err != nil {
			return err
		}
	}
	var path string
	if err := r.run("lookpath", func() (err error) {
		path, err = lookPath(cl.Command[0], cl.Env)
		return err
	}); err != nil {
		return err
	}
	r.step = "exec"
	// Report the timings of this phase; EOF (the socket closing on exec)
	// follows unless execve fails.
	msg, _ := json.Marshal(Ready{Timings: r.timings})
	if _, err := unix.Write(SockFD, msg); err != nil {
		return err
	}
	// Everything the Go runtime opened is close-on-exec already; this also
	// covers anything inherited by mistake. Only 0, 1 and 2 survive.
	_ = unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	err := syscall.Exec(path, cl.Command, cl.Env)
	return fmt.Errorf("exec %s: %w", path, err)
}

// dropPrivileges empties the capability bounding set, switches to uid/gid
// with no supplementary groups (which clears the remaining capabilities),
// and sets no_new_privs so nothing executed later can regain any.
func dropPrivileges(uid, gid int) error {
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
	// the sandbox dies with the host process.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("pdeathsig: %w", err)
	}
	return nil
}

// loadSeccomp installs prog on the calling thread, which then execs.
func loadSeccomp(prog []unix.SockFilter) error {
	if len(prog) == 0 {
		return errors.New("empty seccomp program")
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return nil
}

// lookPath resolves a command without a slash through PATH of env (as the
// runtime will see it, inside the sandbox).
func lookPath(cmd string, env []string) (string, error) {
	if strings.Contains(cmd, "/") {
		return cmd, nil
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			continue
		}
		p := join(dir, cmd)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH %q", cmd, path)
}
