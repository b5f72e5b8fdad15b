package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintdev/flint/internal/sandbox"
)

// hostDriver is a TEST-ONLY sandbox.Driver that runs the runtime as a plain
// host process, mapping /var/task and /var/runtime to the spec's host
// directories. It isolates nothing; it lets the worker be tested where the
// process driver cannot run (no root) and cross-checks it where it can.
type hostDriver struct{}

func (hostDriver) Name() string { return "host-test" }

func (hostDriver) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	mapPath := func(s string) string {
		s = strings.ReplaceAll(s, "/var/task", spec.CodeDir)
		if spec.RuntimeDir != "" {
			s = strings.ReplaceAll(s, "/var/runtime", spec.RuntimeDir)
		}
		return s
	}
	ts := httptest.NewServer(spec.RuntimeAPI)
	argv := make([]string, len(spec.Command))
	for i, a := range spec.Command {
		argv[i] = mapPath(a)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	for _, kv := range spec.Env {
		cmd.Env = append(cmd.Env, mapPath(kv))
	}
	cmd.Env = append(cmd.Env, "AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(ts.URL, "http://"))
	cmd.Dir = spec.CodeDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		ts.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		ts.Close()
		r.Close()
		w.Close()
		return nil, fmt.Errorf("host sandbox %s: %w", spec.ID, err)
	}
	w.Close()
	s := &hostSandbox{id: spec.ID, cmd: cmd, ts: ts, r: r, fd: int(r.Fd()), done: make(chan struct{}), copied: make(chan struct{})}
	go s.copy(spec.Output)
	go s.wait()
	return s, nil
}

type hostSandbox struct {
	id     string
	cmd    *exec.Cmd
	ts     *httptest.Server
	r      *os.File
	fd     int
	done   chan struct{}
	copied chan struct{}

	outMu sync.Mutex // held while a chunk is written to Output

	mu        sync.Mutex
	err       error // guarded by mu
	destroyed bool  // guarded by mu
	once      sync.Once
}

func (s *hostSandbox) copy(out io.Writer) {
	defer close(s.copied)
	buf := make([]byte, 32<<10)
	for {
		n, err := s.r.Read(buf)
		if n > 0 {
			s.outMu.Lock()
			_, _ = out.Write(buf[:n])
			s.outMu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (s *hostSandbox) wait() {
	werr := s.cmd.Wait()
	<-s.copied
	s.mu.Lock()
	if s.destroyed {
		s.err = fmt.Errorf("host sandbox %s: destroyed", s.id)
	} else {
		s.err = fmt.Errorf("host sandbox %s: runtime exited: %w", s.id, werr)
	}
	s.mu.Unlock()
	close(s.done)
}

func (s *hostSandbox) ID() string            { return s.id }
func (s *hostSandbox) Done() <-chan struct{} { return s.done }

func (s *hostSandbox) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// SyncOutput waits until the pipe is empty and the copier has written what
// it read (approximate: a chunk just read but not yet locked can slip by).
func (s *hostSandbox) SyncOutput(ctx context.Context) error {
	for {
		select {
		case <-s.copied:
			return nil
		default:
		}
		n, err := unix.IoctlGetInt(s.fd, unix.TIOCINQ)
		if err == nil && n == 0 {
			time.Sleep(2 * time.Millisecond)
			s.outMu.Lock()
			s.outMu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// Stats reads the runtime's peak RSS (VmHWM); the host driver has no cgroup.
func (s *hostSandbox) Stats() (sandbox.Stats, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return sandbox.Stats{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return sandbox.Stats{}, err
			}
			return sandbox.Stats{MaxMemoryBytes: kb << 10}, nil
		}
	}
	return sandbox.Stats{}, errors.New("no VmHWM")
}

func (s *hostSandbox) Destroy(ctx context.Context) error {
	s.once.Do(func() {
		s.mu.Lock()
		s.destroyed = true
		s.mu.Unlock()
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	})
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.ts.Close()
	s.r.Close()
	return nil
}
