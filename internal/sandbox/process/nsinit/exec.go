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
		{"cgroupns", func() error { return unix.Unshare(unix.CLONE_NEWCGROUP) }},
		{"rlimits", func() error {
			return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: c.NoFile, Max: c.NoFile})
		}},
		{"chdir", func() error { return unix.Chdir("/var/task") }},
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
