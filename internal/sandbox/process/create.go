package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process/nsinit"
)

// Step is the duration of one named step of Create. Steps named "init/..."
// ran inside the sandbox init (they overlap the host's "wait-init").
type Step = sandbox.Step

// cloneFlags are the namespaces every sandbox gets at clone time. The
// cgroup namespace is created by the init later, once it is in its cgroups.
const cloneFlags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC |
	syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET

// initReplyTimeout bounds each wait for the init when Create's ctx has no
// deadline.
const initReplyTimeout = 30 * time.Second

// creation is the state of one Create call.
type creation struct {
	d     *Driver
	spec  *sandbox.Spec
	s     *Sandbox
	ctl   *net.UnixConn // host end of the control socket
	child *os.File      // init's end, closed once the init runs
	outW  *os.File      // write end of the output pipe, ditto
	steps []Step
}

// create runs the named steps of a sandbox's creation:
//
//	cgroup       create the cgroup(s) and set the limits
//	channels     control socketpair and output pipe
//	start        clone the init into new namespaces (re-exec of InitPath)
//	network      (egress only) veth pair into the init's network namespace
//	send-config  hand the init its nsinit.Config
//	cgroup-add   move the init into the cgroup(s) (it works meanwhile;
//	             doing this in the background gains nothing: the kernel
//	             serialises the migration with the init's thread creation)
//	wait-init    the init builds the root fs, brings lo up, listens
//	serve        serve Spec.RuntimeAPI on the init's listener
//	cpu-limit    throttle the CPU only now: the init's own setup runs at
//	             full speed (a 128 MB function gets 7% of a CPU)
//	exec         let the init drop privileges and exec the runtime
//	reset-peak   peak memory counts from here (not the init's setup)
//
// If a step fails everything done so far is undone and the error names the
// step and the sandbox.
func (d *Driver) create(ctx context.Context, spec *sandbox.Spec) (*Sandbox, error) {
	if err := d.validateSpec(spec); err != nil {
		return nil, err
	}
	c := &creation{d: d, spec: spec, s: newSandbox(spec.ID, d.cfg.Logger)}
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"cgroup", c.cgroup},
		{"channels", c.channels},
		{"start", c.start},
		{"network", c.network},
		{"send-config", c.sendConfig},
		{"cgroup-add", c.cgroupAdd},
		{"wait-init", c.waitInit},
		{"serve", c.serve},
		{"cpu-limit", c.cpuLimit},
		{"exec", c.exec},
		{"reset-peak", c.resetPeak},
	}
	for _, st := range steps {
		if st.name == "network" && d.egress == nil {
			continue
		}
		t0 := time.Now()
		err := ctx.Err()
		if err == nil {
			err = st.f(ctx)
		}
		c.steps = append(c.steps, Step{Name: st.name, Duration: time.Since(t0)})
		if err != nil {
			c.closeChannels()
			dctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			if derr := c.s.Destroy(dctx); derr != nil {
				d.cfg.Logger.Error("cleaning up failed sandbox", "sandbox", spec.ID, "err", derr)
			}
			cancel()
			return nil, fmt.Errorf("create sandbox %s: %s: %w", spec.ID, st.name, err)
		}
	}
	c.closeChannels()
	c.s.timings = c.steps
	if d.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		attrs := []any{"sandbox", spec.ID}
		for _, st := range c.steps {
			attrs = append(attrs, st.Name, st.Duration)
		}
		d.cfg.Logger.Debug("sandbox created", attrs...)
	}
	return c.s, nil
}

func (c *creation) closeChannels() {
	for _, f := range []*os.File{c.child, c.outW} {
		if f != nil {
			f.Close()
		}
	}
	c.child, c.outW = nil, nil
	if c.ctl != nil {
		c.ctl.Close()
		c.ctl = nil
	}
}

func (c *creation) cgroup(context.Context) error {
	lim := c.d.limits(c.spec)
	lim.CPUMillis = 0 // see cpuLimit
	g, err := c.d.cgroups.Create(c.spec.ID, lim)
	if err != nil {
		return err
	}
	c.s.group = g
	return nil
}

func (c *creation) channels(context.Context) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	c.child = os.NewFile(uintptr(fds[1]), "flint-init-control")
	hostF := os.NewFile(uintptr(fds[0]), "flint-host-control")
	conn, err := net.FileConn(hostF)
	hostF.Close()
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	c.ctl = conn.(*net.UnixConn)
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("output pipe: %w", err)
	}
	c.outW = w
	c.s.out, err = newOutputCopier(r, c.spec.Output, c.s.log)
	if err != nil {
		r.Close()
		return fmt.Errorf("output pipe: %w", err)
	}
	return nil
}

func (c *creation) start(context.Context) error {
	init := c.d.cfg.InitPath
	cmd := &exec.Cmd{
		Path:       init,
		Args:       []string{init, nsinit.Marker},
		Env:        []string{}, // the host's environment never gets in
		Stdout:     c.outW,
		Stderr:     c.outW,
		ExtraFiles: []*os.File{c.child}, // fd 3 == nsinit.SockFD
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: cloneFlags,
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.s.started(cmd)
	c.child.Close()
	c.outW.Close()
	c.child, c.outW = nil, nil
	return nil
}

// network gives the sandbox its egress link; the init (still waiting for
// its config) configures the sandbox's end.
func (c *creation) network(ctx context.Context) error {
	l, err := c.d.egress.attach(ctx, c.s.cmd.Process.Pid)
	if err != nil {
		return err
	}
	c.s.link = l
	return nil
}

func (c *creation) sendConfig(context.Context) error {
	cfg := c.d.initConfig(c.spec)
	if c.s.link != nil {
		n := c.s.link.net
		cfg.Net = &n
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	_, err = c.ctl.Write(b)
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return nil // the init died already; wait-init says how
	}
	return err
}

func (c *creation) cgroupAdd(context.Context) error {
	err := c.s.group.Add(c.s.cmd.Process.Pid)
	if errors.Is(err, syscall.ESRCH) {
		// The init already died (a setup step failed): wait-init reports
		// why. Nothing can run outside the cgroups: the process is gone.
		return nil
	}
	return err
}

// readReply reads one reply of the init, bounded by ctx, with any file
// descriptors it carries. eof reports that the init closed the socket.
func (c *creation) readReply(ctx context.Context) (r nsinit.Ready, fds []int, eof bool, err error) {
	dl, ok := ctx.Deadline()
	if !ok {
		// An init that never answers (say, a binary whose main does not
		// call MaybeRunInit) must not hang Create forever.
		dl = time.Now().Add(initReplyTimeout)
	}
	c.ctl.SetReadDeadline(dl)
	// The AfterFunc runs in a goroutine of its own that stop does not wait
	// for: it may run after this call has returned and closeChannels has
	// cleared c.ctl, so it holds the connection itself (setting a deadline
	// on a closed one is harmless).
	ctl := c.ctl
	stop := context.AfterFunc(ctx, func() { ctl.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ctl.ReadMsgUnix(buf, oob)
	if ctx.Err() != nil {
		return r, nil, false, ctx.Err()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if _, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return r, nil, false, context.DeadlineExceeded
		}
		return r, nil, false, fmt.Errorf("init did not answer within %v", initReplyTimeout)
	}
	if n <= 0 && oobn == 0 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		// Closed; ECONNRESET when it died with our message unread.
		return r, nil, true, nil
	}
	if err != nil {
		return r, nil, false, err
	}
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		if perr == nil {
			for i := range msgs {
				if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	if n == 0 {
		return r, fds, true, nil
	}
	if err := json.Unmarshal(buf[:n], &r); err != nil {
		closeAll(fds)
		return r, nil, false, fmt.Errorf("bad reply from init: %w", err)
	}
	if r.Error != "" {
		closeAll(fds)
		return r, nil, false, fmt.Errorf("init step %s: %s", r.Step, r.Error)
	}
	return r, fds, false, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// initGone describes an init that closed its socket unexpectedly.
func (c *creation) initGone() error {
	select {
	case <-c.s.done:
		return fmt.Errorf("init died: %v", c.s.Err())
	case <-time.After(time.Second):
		return errors.New("init closed its control socket")
	}
}

func (c *creation) waitInit(ctx context.Context) error {
	r, fds, eof, err := c.readReply(ctx)
	if err != nil {
		return err
	}
	if eof {
		return c.initGone()
	}
	if len(fds) != 1 {
		closeAll(fds)
		return fmt.Errorf("init sent %d descriptors, want 1", len(fds))
	}
	for _, t := range r.Timings {
		c.steps = append(c.steps, Step{Name: "init/" + t.Step, Duration: time.Duration(t.Nanos)})
	}
	f := os.NewFile(uintptr(fds[0]), "runtime-api-listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("runtime API listener: %w", err)
	}
	c.s.ln = newLimitListener(ln, max(c.d.cfg.MaxAPIConns, c.spec.RuntimeAPIConns))
	return nil
}

func (c *creation) serve(context.Context) error {
	srv := &http.Server{
		Handler:  c.spec.RuntimeAPI,
		ErrorLog: slog.NewLogLogger(c.s.log.Handler(), slog.LevelDebug),
	}
	c.s.serve(srv)
	return nil
}

func (c *creation) cpuLimit(context.Context) error {
	return c.s.group.SetCPU(c.d.limits(c.spec).CPUMillis)
}

func (c *creation) resetPeak(context.Context) error {
	return c.s.group.ResetPeak()
}

func (c *creation) exec(ctx context.Context) error {
	if _, err := c.ctl.Write([]byte{nsinit.GoByte}); err != nil {
		return err
	}
	r, fds, eof, err := c.readReply(ctx)
	closeAll(fds)
	if err != nil {
		return err
	}
	if eof {
		return c.initGone()
	}
	for _, t := range r.Timings {
		c.steps = append(c.steps, Step{Name: "init/" + t.Step, Duration: time.Duration(t.Nanos)})
	}
	_, fds, eof, err = c.readReply(ctx)
	closeAll(fds)
	if err != nil {
		return err
	}
	if !eof {
		return errors.New("init replied instead of exec'ing the runtime")
	}
	return nil
}
