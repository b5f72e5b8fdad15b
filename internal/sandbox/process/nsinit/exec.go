package nsinit

import (
	"errors"
	"syscall"
	"unsafe"

	"github.com/flintdev/flint/internal/privdrop"
)

// confine drops every privilege and installs the seccomp filter, and
// resolves the runtime's path: everything before execve but the wait for
// the host's Go, so that it overlaps the host's last claim steps instead
// of following them. Nothing of the function runs before execRuntime.
func (r *runner) confine() (path string, err error) {
	c, cl := r.cfg, r.claim
	steps := []step{
		// The cgroup namespace is created only now, in the sandbox's
		// cgroups (the host put the init there before it was prepared and
		// does not move it at the claim), so that it is rooted there.
		{"cgroupns", func() error { return syscall.Unshare(syscall.CLONE_NEWCGROUP) }},
		{"rlimits", func() error {
			return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: c.NoFile, Max: c.NoFile})
		}},
		{"chdir", func() error { return syscall.Chdir("/var/task") }},
		{"drop-privileges", func() error { return privdrop.Drop(c.UID, c.GID) }},
		{"seccomp", func() error { return loadSeccomp(c.Seccomp) }},
		{"lookpath", func() (err error) {
			path, err = lookPath(cl.Command[0], cl.Env)
			return err
		}},
	}
	return path, r.runAll(steps)
}

// execRuntime replaces the init with the runtime at path (confined
// already). It only returns on failure.
func (r *runner) execRuntime(path string) error {
	r.step = "exec"
	// Report the timings of the claim; EOF (the socket closing on exec)
	// follows unless execve fails.
	msg, _ := (&Ready{Timings: r.timings}).MarshalBinary()
	if _, err := syscall.Write(SockFD, msg); err != nil {
		return err
	}
	// Everything the Go runtime opened is close-on-exec already; this also
	// covers anything inherited by mistake. Only 0, 1 and 2 survive.
	syscall.RawSyscall(sysCloseRange, 3, ^uintptr(0)>>32, closeRangeCloexec)
	err := syscall.Exec(path, r.claim.Command, r.claim.Env)
	return wrap("exec "+path, err)
}

// loadSeccomp installs prog on the calling thread, which then execs.
func loadSeccomp(prog []syscall.SockFilter) error {
	if len(prog) == 0 {
		return errors.New("empty seccomp program")
	}
	fprog := syscall.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := syscall.RawSyscall(sysSeccomp, seccompSetModeFilter, 0, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return wrap("seccomp", errno)
	}
	return nil
}

// lookPath resolves a command without a slash through PATH of env (as the
// runtime will see it, inside the sandbox).
func lookPath(cmd string, env []string) (string, error) {
	for i := 0; i < len(cmd); i++ {
		if cmd[i] == '/' {
			return cmd, nil
		}
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if len(kv) >= 5 && kv[:5] == "PATH=" {
			path = kv[5:]
		}
	}
	for rest := path; ; {
		i := 0
		for i < len(rest) && rest[i] != ':' {
			i++
		}
		if d := rest[:i]; d != "" {
			p := join(d, cmd)
			if st, err := stat(p); err == nil && isRegular(&st) && st.Mode&0o111 != 0 {
				return p, nil
			}
		}
		if i == len(rest) {
			break
		}
		rest = rest[i+1:]
	}
	return "", errors.New(cmd + ": not found in PATH \"" + path + "\"")
}
