package process

import (
	"context"
	"errors"
	"fmt"
	"github.com/flintdev/flint/internal/sandbox/egress"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process/cgroup"
)

// Errors wrapped by Sandbox.Err besides sandbox.ErrOutOfMemory.
var (
	// ErrExited: the runtime (pid 1 of the sandbox) exited on its own.
	ErrExited = errors.New("process: runtime exited")
	// ErrDestroyed: Destroy killed the sandbox.
	ErrDestroyed = errors.New("process: sandbox destroyed")
)

// Sandbox is one process sandbox. Its states:
//
//	  Create
//	    │ (fails: everything undone, no Sandbox)
//	    ▼
//	┌────────┐  runtime exits / OOM kill   ┌────────┐
//	│running │ ───────────────────────────►│ exited │  Done closed,
//	└────────┘                             └────────┘  Err set
//	    │ Destroy                               │ Destroy
//	    ▼                                       ▼
//	┌──────────────────────────────────────────────┐
//	│ gone: processes killed, listener, cgroups,   │
//	│ pipes closed; Stats frozen at their last     │
//	│ value; Destroy again returns the same result │
//	└──────────────────────────────────────────────┘
//
// The runtime is pid 1 of the sandbox's pid namespace, so its exit (or
// SIGKILL) makes the kernel kill every other process of the sandbox,
// double-forked and setsid ones included; Done is closed after all of them
// are gone. All methods are safe for concurrent use.
type Sandbox struct {
	// id and log change once, when a prepared sandbox is claimed (under
	// mu, before the Sandbox is handed out); wait reads id under mu.
	id  string
	log *slog.Logger

	// Set during Create, read-only afterwards.
	group   *cgroup.Group
	cmd     *exec.Cmd
	out     *outputCopier
	ln      net.Listener
	srv     *http.Server
	link    *egress.Link // egress veth pair, nil without egress
	timings []Step
	renamed chan struct{} // closed when renameGroup is done; nil without one

	done chan struct{} // closed by wait once the init process is reaped

	mu         sync.Mutex // guards the fields below
	exitErr    error      // why the sandbox ended; set before done is closed
	destroying bool
	lastStats  *sandbox.Stats // usage read just before the cgroups went away
	exited     bool           // the init was reaped
	releaseCPU func()         // gives back the sandbox's CPUs; run once it exited

	destroyOnce sync.Once
	torn        chan struct{} // closed when teardown has finished
	destroyErr  error         // set before torn is closed
}

var _ sandbox.Sandbox = (*Sandbox)(nil)

func newSandbox(id string, log *slog.Logger) *Sandbox {
	return &Sandbox{id: id, log: log.With("sandbox", id), done: make(chan struct{}), torn: make(chan struct{})}
}

// ID implements sandbox.Sandbox.
func (s *Sandbox) ID() string { return s.id }

// Done implements sandbox.Sandbox.
func (s *Sandbox) Done() <-chan struct{} { return s.done }

// Pid is the host pid of the sandbox's pid 1 (the runtime).
func (s *Sandbox) Pid() int { return s.cmd.Process.Pid }

// Timings reports how long each named step of Create took (the
// sandbox.StepTimer ability).
func (s *Sandbox) Timings() []Step { return append([]Step(nil), s.timings...) }

// Err implements sandbox.Sandbox: nil while running; then wraps
// sandbox.ErrOutOfMemory, ErrDestroyed or ErrExited.
func (s *Sandbox) Err() error {
	select {
	case <-s.done:
	default:
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exitErr
}

// SyncOutput implements sandbox.Sandbox.
func (s *Sandbox) SyncOutput(ctx context.Context) error {
	if err := s.out.sync(ctx); err != nil {
		return fmt.Errorf("sync output of sandbox %s: %w", s.id, err)
	}
	return nil
}

// Stats implements sandbox.Sandbox.
func (s *Sandbox) Stats() (sandbox.Stats, error) {
	s.mu.Lock()
	last := s.lastStats
	s.mu.Unlock()
	if last != nil {
		return *last, nil
	}
	st, err := s.group.Stats()
	if err != nil {
		// Lost a race with Destroy?
		s.mu.Lock()
		last = s.lastStats
		s.mu.Unlock()
		if last != nil {
			return *last, nil
		}
		return sandbox.Stats{}, err
	}
	return sandbox.Stats{MaxMemoryBytes: st.MaxMemoryBytes, OOMKills: st.OOMKills}, nil
}

// MaxMemoryBytes implements sandbox.PeakMemoryReader: one read of the
// cgroup's peak, where Stats also reads the OOM count.
func (s *Sandbox) MaxMemoryBytes() (uint64, error) {
	s.mu.Lock()
	last := s.lastStats
	s.mu.Unlock()
	if last != nil {
		return last.MaxMemoryBytes, nil
	}
	peak, err := s.group.Peak()
	if err != nil {
		// Lost a race with Destroy?
		s.mu.Lock()
		last = s.lastStats
		s.mu.Unlock()
		if last != nil {
			return last.MaxMemoryBytes, nil
		}
		return 0, err
	}
	return peak, nil
}

var _ sandbox.PeakMemoryReader = (*Sandbox)(nil)

// rename gives a claimed sandbox its id.
func (s *Sandbox) rename(id string, log *slog.Logger) {
	s.mu.Lock()
	s.id, s.log = id, log.With("sandbox", id)
	s.mu.Unlock()
}

// renameGroup names the cgroups of a claimed sandbox after it, in the
// background (cgroup v1 only: v2 cannot rename, and there the sandbox keeps
// its pool-<hex> cgroup, since moving the init into new ones would be a
// migration). It is only a name, for whoever reads the host's cgroups: the
// runtime, in its cgroup namespace, sees "/" whatever it is, and the Sandbox
// holds its Group. It is not a step of the claim because a rename takes the
// kernel's cgroup_mutex, which a migration elsewhere (the pool's next
// preparation moving its init into its cgroups, cgroup-add) holds through an
// RCU grace period, 5-15 ms on a small VM: the cold start would wait for
// it. Meanwhile the Group is read only through the descriptors Stats and
// Peak use; teardown waits for the rename before it removes the cgroups. A
// rename that fails leaves the pool-<hex> name (Destroy still finds what was
// renamed). Called once, before the Sandbox is handed out.
func (s *Sandbox) renameGroup(m *cgroup.Manager, id string) {
	done := make(chan struct{})
	s.renamed = done
	go func() {
		defer close(done)
		if err := m.Rename(s.group, id); err != nil {
			s.log.Warn("naming the sandbox's cgroups after it", "err", err)
		}
	}()
}

// started records the running init and waits for it in the background.
func (s *Sandbox) started(cmd *exec.Cmd) {
	s.cmd = cmd
	// Our child, not yet reaped: its pid cannot have been reused.
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		pidfd = -1 // kernel before 5.10: cmd.Wait blocks a thread
	}
	go s.wait(pidfd)
}

// wait reaps the init once it has exited, then records why it ended.
func (s *Sandbox) wait(pidfd int) {
	awaitExit(pidfd)
	werr := s.cmd.Wait()
	err := s.exitCause(werr)
	s.mu.Lock()
	s.exitErr = err
	s.exited = true
	release := s.releaseCPU
	s.releaseCPU = nil
	s.mu.Unlock()
	if release != nil {
		release()
	}
	close(s.done)
}

// awaitExit returns once the process of pidfd (non-blocking; closed here)
// has exited, or at once when pidfd is -1 or cannot be polled. It waits in
// the Go runtime's network poller, where cmd.Wait would block in waitid:
// a thread per sandbox for its whole life, and, worse for the cold starts
// of a small host, the system call keeps its P (GOMAXPROCS is the host's
// 2 CPUs) until sysmon retakes it, which takes up to 10 ms when the server
// was idle; with the other P idle and no thread in the poller meanwhile,
// nothing answers a starting runtime's /next (perf sched traces of the cold
// bench showed both CPUs idle while a runtime waited).
func awaitExit(pidfd int) {
	if pidfd < 0 {
		return
	}
	f := os.NewFile(uintptr(pidfd), "pidfd") // registered with the poller: non-blocking
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	// A pidfd is readable once its process has exited. Read returns an
	// error at once if f could not be registered with the poller.
	_ = rc.Read(func(fd uintptr) bool {
		p := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(p[:], 0)
		return n > 0 || (err != nil && err != unix.EINTR)
	})
}

// holdCPUs records how to give back the CPUs assigned to the sandbox once
// it has exited; if it has already, it gives them back at once and reports
// false.
func (s *Sandbox) holdCPUs(release func()) bool {
	s.mu.Lock()
	if s.exited {
		s.mu.Unlock()
		release()
		return false
	}
	s.releaseCPU = release
	s.mu.Unlock()
	return true
}

// exitCause explains the end of the sandbox: the OOM killer first (even
// if Destroy came later), then Destroy, else the runtime's own exit.
func (s *Sandbox) exitCause(werr error) error {
	s.mu.Lock()
	destroying, id := s.destroying, s.id
	s.mu.Unlock()
	killed := false
	if ee, ok := werr.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			killed = true
		}
	}
	oom := s.oomKills()
	// The kernel counts an OOM kill just after sending SIGKILL; give it a
	// moment when a SIGKILL nobody here sent ended the runtime.
	for i := 0; oom == 0 && killed && !destroying && i < 20; i++ {
		time.Sleep(2 * time.Millisecond)
		oom = s.oomKills()
	}
	if oom > 0 {
		return fmt.Errorf("sandbox %s: %w (%d processes killed; runtime: %v)", id, sandbox.ErrOutOfMemory, oom, exitString(werr))
	}
	if destroying {
		return fmt.Errorf("sandbox %s: %w", id, ErrDestroyed)
	}
	return fmt.Errorf("sandbox %s: %w: %s", id, ErrExited, exitString(werr))
}

func (s *Sandbox) oomKills() uint64 {
	s.mu.Lock()
	g := s.group
	s.mu.Unlock()
	if g == nil {
		return 0
	}
	st, err := g.Stats()
	if err != nil {
		return 0
	}
	return st.OOMKills
}

func exitString(werr error) string {
	if werr == nil {
		return "exit status 0"
	}
	return werr.Error()
}

func (s *Sandbox) serve(srv *http.Server) {
	s.srv = srv
	go func() {
		if err := srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("runtime API server", "err", err)
		}
	}()
}

// Destroy implements sandbox.Sandbox. The teardown runs once, in the
// background; every call waits for it or for ctx, whichever comes first.
func (s *Sandbox) Destroy(ctx context.Context) error {
	s.destroyOnce.Do(func() { go s.teardown() })
	select {
	case <-s.torn:
		return s.destroyErr
	case <-ctx.Done():
		return fmt.Errorf("destroy sandbox %s: %w", s.id, ctx.Err())
	}
}

// teardownGrace bounds each wait of the teardown.
const teardownGrace = 10 * time.Second

func (s *Sandbox) teardown() {
	defer close(s.torn)
	deadline := time.Now().Add(teardownGrace)
	var errs []error
	s.mu.Lock()
	s.destroying = true
	s.mu.Unlock()
	if s.cmd != nil {
		// SIGKILL to pid 1 of the pid namespace: the kernel kills the rest.
		if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("kill init: %w", err))
		}
		select {
		case <-s.done:
		case <-time.After(time.Until(deadline)):
			errs = append(errs, errors.New("init did not exit after SIGKILL"))
		}
	}
	if s.srv != nil {
		s.srv.Close()
	} else if s.ln != nil {
		s.ln.Close()
	}
	if s.link != nil {
		// The veth pair goes with the network namespace.
		s.link.Release()
	}
	if s.renamed != nil {
		select {
		case <-s.renamed:
		case <-time.After(time.Until(deadline)):
			errs = append(errs, errors.New("renaming the cgroups did not end"))
		}
	}
	if s.group != nil {
		if st, err := s.group.Stats(); err == nil {
			s.mu.Lock()
			s.lastStats = &sandbox.Stats{MaxMemoryBytes: st.MaxMemoryBytes, OOMKills: st.OOMKills}
			s.mu.Unlock()
		}
		if err := s.group.Destroy(deadline); err != nil {
			errs = append(errs, err)
		}
	}
	if s.out != nil {
		select {
		case <-s.out.finished:
		case <-time.After(time.Until(deadline)):
			errs = append(errs, errors.New("output pipe still open"))
		}
		s.out.f.Close()
	}
	if len(errs) > 0 {
		s.destroyErr = fmt.Errorf("destroy sandbox %s: %w", s.id, errors.Join(errs...))
		s.log.Error("sandbox teardown incomplete", "err", s.destroyErr)
	}
}

// EgressAddr is the sandbox's address on its egress link, and the host
// end's (its gateway); ok is false without egress.
func (s *Sandbox) EgressAddr() (addr, gateway netip.Addr, ok bool) {
	if s.link == nil {
		return netip.Addr{}, netip.Addr{}, false
	}
	return netip.AddrFrom4(s.link.Addr), netip.AddrFrom4(s.link.Gateway), true
}

var _ sandbox.StepTimer = (*Sandbox)(nil)
