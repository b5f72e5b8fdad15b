package nsinit

import (
	"errors"
	"syscall"
	"unsafe"

	"github.com/flintdev/flint/internal/privdrop"
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
		{"cgroupns", func() error { return syscall.Unshare(syscall.CLONE_NEWCGROUP) }},
		{"rlimits", func() error {
			return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: c.NoFile, Max: c.NoFile})
		}},
		{"chdir", func() error { return syscall.Chdir("/var/task") }},
		{"drop-privileges", func() error { return privdrop.Drop(c.UID, c.GID) }},
		{"seccomp", func() error { return loadSeccomp(c.Seccomp) }},
	}
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
	// Report the timings of the claim; EOF (the socket closing on exec)
	// follows unless execve fails.
	msg, _ := (&Ready{Timings: r.timings}).MarshalBinary()
	if _, err := syscall.Write(SockFD, msg); err != nil {
		return err
	}
	// Everything the Go runtime opened is close-on-exec already; this also
	// covers anything inherited by mistake. Only 0, 1 and 2 survive.
	syscall.RawSyscall(sysCloseRange, 3, ^uintptr(0)>>32, closeRangeCloexec)
	err := syscall.Exec(path, cl.Command, cl.Env)
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
