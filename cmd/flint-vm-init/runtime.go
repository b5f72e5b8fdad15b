//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/flintdev/flint/internal/sandbox/syscallfilter"
	"github.com/flintdev/flint/internal/vm/vmchan"
)

const (
	cgroupRoot = "/sys/fs/cgroup"
	cgroupDir  = cgroupRoot + "/runtime"
)

// runtime is the started runtime process and its output forwarder.
type runtime struct {
	pid     int
	out     *forwarder
	outDone chan struct{}
}

// startRuntime prepares the guest for s and starts the runtime through
// the launcher (ExecArg) in its cgroup, with stdout and stderr on one pipe.
func startRuntime(s vmchan.Start, sess *yamux.Session, outStream io.WriteCloser) (*runtime, error) {
	if len(s.Command) == 0 || !filepath.IsAbs(s.Command[0]) {
		return nil, fmt.Errorf("command %q: want an absolute path", s.Command)
	}
	if s.UID <= 0 || s.GID <= 0 {
		return nil, fmt.Errorf("uid %d gid %d: the runtime never runs as root", s.UID, s.GID)
	}
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV,
		fmt.Sprintf("mode=1777,size=%dm", max(s.TmpMB, 1))); err != nil {
		return nil, fmt.Errorf("size /tmp: %w", err)
	}
	if err := os.Mkdir(cgroupDir, 0o755); err != nil {
		return nil, err
	}
	for file, v := range map[string]string{
		"memory.max":      strconv.Itoa(s.MemoryMB) + "M",
		"memory.swap.max": "0",
		"pids.max":        strconv.Itoa(s.PidsMax),
	} {
		if err := os.WriteFile(filepath.Join(cgroupDir, file), []byte(v), 0); err != nil && file != "memory.swap.max" {
			return nil, fmt.Errorf("cgroup %s: %w", file, err)
		}
	}
	cg, err := os.Open(cgroupDir)
	if err != nil {
		return nil, err
	}
	defer cg.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(vmchan.RuntimeAPIPort))
	if err != nil {
		return nil, err
	}
	go proxyRuntimeAPI(ln, sess)

	if _, err := os.Stat(s.Command[0]); err != nil {
		return nil, fmt.Errorf("runtime %s: %w", s.Command[0], err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	null, err := os.Open("/dev/null")
	if err != nil {
		return nil, err
	}
	defer null.Close()
	env := append(append([]string(nil), s.Env...), "AWS_LAMBDA_RUNTIME_API=127.0.0.1:"+strconv.Itoa(vmchan.RuntimeAPIPort))
	args := append([]string{"flint-vm-init", ExecArg, strconv.Itoa(s.UID), strconv.Itoa(s.GID)}, s.Command...)
	// The init lives in the initramfs, no longer reachable by a path
	// after switchRoot.
	p, err := os.StartProcess("/proc/self/exe", args, &os.ProcAttr{
		Dir: s.Dir, Env: env, Files: []*os.File{null, w, w},
		Sys: &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: int(cg.Fd())},
	})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("start %s: %w", s.Command[0], err)
	}
	rc, err := r.SyscallConn()
	if err != nil {
		return nil, err
	}
	rt := &runtime{pid: p.Pid, out: &forwarder{rc: rc, w: outStream, buf: make([]byte, vmchan.MaxFrame)}, outDone: make(chan struct{})}
	go func() {
		rt.out.loop()
		r.Close()
		// The end of the output stream tells the host it has every byte.
		rt.out.mu.Lock()
		outStream.Close()
		rt.out.mu.Unlock()
		close(rt.outDone)
	}()
	return rt, nil
}

// wait reaps processes until the runtime exits, then kills what is left
// in its cgroup, waits for the last output, and returns the exit event.
func (rt *runtime) wait() vmchan.Event {
	ev := vmchan.Event{Type: "exit"}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			ev.Error = err.Error()
			break
		}
		if pid != rt.pid || !(ws.Exited() || ws.Signaled()) {
			continue // an orphan reaped, or a stop
		}
		if ws.Signaled() {
			ev.Signal = ws.Signal().String()
		} else {
			ev.Code = ws.ExitStatus()
		}
		break
	}
	_ = os.WriteFile(filepath.Join(cgroupDir, "cgroup.kill"), []byte("1"), 0)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(cgroupDir, "cgroup.procs"))
		if len(bytes.TrimSpace(b)) == 0 {
			break
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); err != nil {
			time.Sleep(time.Millisecond)
		}
	}
	select {
	case <-rt.outDone:
	case <-time.After(5 * time.Second):
	}
	st := rt.stats()
	ev.MaxMemoryBytes, ev.OOMKills = st.MaxMemoryBytes, st.OOMKills
	return ev
}

// stats reads the runtime cgroup's peak memory and OOM kills.
func (rt *runtime) stats() vmchan.Event {
	var ev vmchan.Event
	if b, err := os.ReadFile(filepath.Join(cgroupDir, "memory.peak")); err == nil {
		ev.MaxMemoryBytes, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	if b, err := os.ReadFile(filepath.Join(cgroupDir, "memory.events")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				ev.OOMKills, _ = strconv.ParseUint(v, 10, 64)
			}
		}
	}
	return ev
}

// forwarder copies the runtime's output pipe to the output stream. Every
// read from the pipe and its forwarding happen under mu, so that sync,
// holding mu, sees the pipe empty only when every byte written before it
// was called has been forwarded.
type forwarder struct {
	rc  syscall.RawConn // the pipe's read end (non-blocking)
	mu  sync.Mutex      // guards w, buf, eof
	w   io.Writer
	buf []byte
	eof bool
}

// readLocked reads once from the pipe and forwards what it got. It
// reports false when the pipe is empty.
func (f *forwarder) readLocked(fd uintptr) bool {
	if f.eof {
		return true
	}
	n, err := unix.Read(int(fd), f.buf)
	switch {
	case errors.Is(err, unix.EAGAIN):
		return false
	case err != nil || n == 0:
		f.eof = true
	default:
		_ = vmchan.WriteFrame(f.w, vmchan.FrameData, f.buf[:n])
	}
	return true
}

func (f *forwarder) loop() {
	for {
		err := f.rc.Read(func(fd uintptr) bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.readLocked(fd)
		})
		f.mu.Lock()
		eof := f.eof
		f.mu.Unlock()
		if err != nil || eof {
			return
		}
	}
}

// sync forwards whatever the pipe holds, then acknowledges seq.
func (f *forwarder) sync(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_ = f.rc.Control(func(fd uintptr) {
		for !f.eof && f.readLocked(fd) {
		}
	})
	_ = vmchan.WriteFrame(f.w, vmchan.FrameSync, vmchan.SyncFrame(seq))
}

// execRuntime is the launcher: args are uid, gid, then the runtime's argv.
// It confines the runtime's view (confineView), drops the capability
// bounding set, takes the uid and gid, sets
// no_new_privs and installs Flint's seccomp filter (syscallfilter), as the
// process driver's sandbox init does, then executes the runtime.
func execRuntime(args []string) {
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "flint-vm-init: %v\n", err)
		os.Exit(127)
	}
	if len(args) < 3 {
		fail(errors.New("launcher: want uid gid command..."))
	}
	uid, err1 := strconv.Atoi(args[0])
	gid, err2 := strconv.Atoi(args[1])
	if err := errors.Join(err1, err2); err != nil || uid <= 0 || gid <= 0 {
		fail(fmt.Errorf("launcher: bad uid/gid %q %q", args[0], args[1]))
	}
	// The mount namespace, the capability bounding set and the seccomp
	// filter are per thread: do all of it on the thread that executes.
	goruntime.LockOSThread()
	if err := confineView(); err != nil {
		fail(fmt.Errorf("launcher: %w", err))
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			fail(fmt.Errorf("drop capability %d: %w", c, err))
		}
	}
	if err := syscall.Setgroups(nil); err != nil {
		fail(err)
	}
	if err := syscall.Setgid(gid); err != nil {
		fail(err)
	}
	if err := syscall.Setuid(uid); err != nil {
		fail(err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail(err)
	}
	prog, err := syscallfilter.Program()
	if err != nil {
		fail(err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		fail(fmt.Errorf("seccomp: %w", errno))
	}
	if err := syscall.Exec(args[2], args[2:], os.Environ()); err != nil {
		fail(fmt.Errorf("exec %s: %w", args[2], err))
	}
}
