package process

import (
	"context"
	"errors"
	"fmt"
	"github.com/flintdev/flint/internal/sandbox/egress"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process/cgroup"
	"github.com/flintdev/flint/internal/sandbox/process/nsinit"
)

// Step is the duration of one named step of Create. Steps named "init/..."
// ran inside the sandbox init (they overlap the host's "wait-prepared" and "exec").
type Step = sandbox.Step

// cloneFlags are the namespaces every sandbox gets at clone time. The
// cgroup namespace is created by the init later, once it is in its cgroups.
const cloneFlags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC |
	syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET

// initReplyTimeout bounds each wait for the init when Create's ctx has no
// deadline.
const initReplyTimeout = 30 * time.Second

// creation is the state of one sandbox's creation, from Prepare (or the
// first half of Create) to the end of its claim.
type creation struct {
	d     *Driver
	lim   cgroup.Limits // the sandbox's limits: its spec's (a pooled one's once claimed)
	spec  *sandbox.Spec // nil until claimed
	s     *Sandbox
	ctl   *net.UnixConn // host end of the control socket
	child *os.File      // init's end, closed once the init runs
	outW  *os.File      // write end of the output pipe, ditto
	steps []Step
}

// namedStep is one step of a creation.
type namedStep struct {
	name string
	f    func(context.Context) error
}

// prepareSteps build a sandbox as far as it goes without a function:
//
//	cgroup        create the cgroup(s) and set the limits
//	channels      control socketpair and output pipe
//	start         clone the init into new namespaces (exec of InitPath);
//	              on cgroup v2 directly into its cgroup (clone3 with
//	              CLONE_INTO_CGROUP, when the kernel has it)
//	network       (egress only) veth pair into the init's network namespace
//	send-config   hand the init its nsinit.Config
//	cgroup-add    (v1, or v2 without CLONE_INTO_CGROUP) move the init into
//	              the cgroup(s) (it works meanwhile; doing this in the
//	              background gains nothing: the kernel serialises the
//	              migration with the init's thread creation, and with every
//	              fork, exec and thread creation on the host)
//	wait-prepared the init builds the root fs (host dirs, /etc, /proc,
//	              /dev, an empty /tmp), brings lo up, listens, pivots root (detaching
//	              the host's file system), and sends the listener
//
// claimSteps hand it its function and start the runtime, in one exchange
// with the init (no step waits for it before exec):
//
//	cpu-pin       pin the init (so the runtime) to its CPUs while it still
//	              sleeps, waiting for its claim (moving a running task to
//	              another CPU waits for that CPU's stopper thread)
//	send-claim    hand the init its nsinit.Claim, with the function's
//	              directories as detached read-only mounts (open_tree); it
//	              attaches them, sizes /tmp and makes / read-only while
//	              the host goes on
//	claim-cgroup  (pooled only) set the function's memory limit
//	serve         serve Spec.RuntimeAPI on the init's listener
//	cpu-limit     throttle the CPU only now: the init's own setup runs at
//	              full speed (a 128 MB function gets 7% of a CPU)
//	exec          let the init (once its claim steps are done and it has
//	              dropped privileges and loaded seccomp, meanwhile) exec
//	              the runtime; wait for the execve
//	reset-peak    peak memory counts from here (not the init's setup)
//
// A claim on cgroup v1 then renames the cgroups after the sandbox (v2
// cannot rename: the sandbox keeps pool-<hex>) in the background, not as a
// step: a rename takes the kernel's cgroup_mutex, which a concurrent
// migration (cgroup-add of the pool's next preparation) holds through an
// RCU grace period, 5-15 ms on a small VM, and the cold start would wait
// for it (see Sandbox.renameGroup).
//
// Create runs both lists back to back; Prepare the first, Claim the second
// (see pool.go). If a step fails everything done so far is undone and the
// error names the step and the sandbox.
func (c *creation) prepareSteps() []namedStep {
	steps := []namedStep{
		{"cgroup", c.cgroup},
		{"channels", c.channels},
		{"start", c.start},
		{"network", c.network},
		{"send-config", c.sendConfig},
	}
	if !c.d.cloneIntoCgroup {
		steps = append(steps, namedStep{"cgroup-add", c.cgroupAdd})
	}
	return append(steps, namedStep{"wait-prepared", c.waitPrepared})
}

func (c *creation) claimSteps(pooled bool) []namedStep {
	steps := []namedStep{{"cpu-pin", c.cpuPin}, {"send-claim", c.sendClaim}}
	if pooled {
		steps = append(steps, namedStep{"claim-cgroup", c.claimCgroup})
	}
	steps = append(steps,
		namedStep{"serve", c.serve},
		namedStep{"cpu-limit", c.cpuLimit},
		namedStep{"exec", c.exec},
	)
	return append(steps, namedStep{"reset-peak", c.resetPeak})
}

func (d *Driver) create(ctx context.Context, spec *sandbox.Spec) (*Sandbox, error) {
	if err := d.validateSpec(spec); err != nil {
		return nil, err
	}
	c := d.newCreation(spec.ID, d.limits(spec))
	c.spec = spec
	if err := c.run(ctx, c.prepareSteps()); err != nil {
		return nil, err
	}
	if err := c.run(ctx, c.claimSteps(false)); err != nil {
		return nil, err
	}
	return c.finish(ctx), nil
}

func (d *Driver) newCreation(id string, lim cgroup.Limits) *creation {
	return &creation{d: d, lim: lim, s: newSandbox(id, d.cfg.Logger)}
}

// run runs steps in order, timing each; on the first error it undoes
// everything (the sandbox is destroyed) and returns the error.
func (c *creation) run(ctx context.Context, steps []namedStep) error {
	for _, st := range steps {
		if st.name == "network" && c.d.egress == nil {
			continue
		}
		t0 := time.Now()
		err := ctx.Err()
		if err == nil {
			err = st.f(ctx)
		}
		c.steps = append(c.steps, Step{Name: st.name, Duration: time.Since(t0)})
		if err != nil {
			c.abort()
			return fmt.Errorf("create sandbox %s: %s: %w", c.s.id, st.name, err)
		}
	}
	return nil
}

// abort undoes a creation that failed or will never be claimed.
func (c *creation) abort() {
	c.closeChannels()
	dctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if derr := c.s.Destroy(dctx); derr != nil {
		c.d.cfg.Logger.Error("cleaning up failed sandbox", "sandbox", c.s.id, "err", derr)
	}
}

// finish hands the claimed sandbox over.
func (c *creation) finish(ctx context.Context) *Sandbox {
	c.closeChannels()
	c.s.timings = c.steps
	if c.d.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		attrs := []any{"sandbox", c.s.id}
		for _, st := range c.steps {
			attrs = append(attrs, st.Name, st.Duration)
		}
		c.d.cfg.Logger.Debug("sandbox created", attrs...)
	}
	return c.s
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
	lim := c.lim
	lim.CPUMillis = 0 // see cpuLimit
	g, err := c.d.cgroups.Create(c.s.id, lim)
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
	var out io.Writer = io.Discard // the function's Output from the claim on
	if c.spec != nil {
		out = c.spec.Output
	}
	c.s.out, err = newOutputCopier(r, out, c.s.log)
	if err != nil {
		r.Close()
		return fmt.Errorf("output pipe: %w", err)
	}
	return nil
}

func (c *creation) start(context.Context) error {
	init := c.d.cfg.InitPath
	cmd := &exec.Cmd{
		Path: init,
		Args: []string{init, nsinit.Marker},
		// The host's environment never gets in; the init's own ends at
		// the runtime's execve. No garbage collection (the init
		// allocates a few MB, then execs) and one P: fewer threads to
		// start, and to end at the execve (halves the exec step). No
		// memory profiling either: a sampled allocation unwinds its
		// stack through the binary's tables, faulting in their pages.
		Env:        []string{"GOGC=off", "GOMAXPROCS=1", "GODEBUG=memprofilerate=0"},
		Stdout:     c.outW,
		Stderr:     c.outW,
		ExtraFiles: []*os.File{c.child}, // fd 3 == nsinit.SockFD
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: cloneFlags,
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	if c.d.cloneIntoCgroup {
		// The init is born in its cgroup: no cgroup-add, so no migration
		// (see Driver.cloneIntoCgroup), and it never runs outside it.
		fd, err := c.s.group.OpenDir()
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
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
	l, err := c.d.egress.AttachVeth(ctx, c.s.cmd.Process.Pid)
	if err != nil {
		return err
	}
	c.s.link = l
	return nil
}

func (c *creation) sendConfig(context.Context) error {
	cfg := c.d.initConfig(c.s.id)
	if c.s.link != nil {
		l := c.s.link
		cfg.Net = &nsinit.Net{Iface: egress.SandboxIface, Addr: l.Addr, PrefixLen: l.PrefixLen, Gateway: l.Gateway}
	}
	b, err := cfg.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = c.ctl.Write(b)
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return nil // the init died already; wait-prepared says how
	}
	return err
}

func (c *creation) cgroupAdd(context.Context) error {
	err := c.s.group.Add(c.s.cmd.Process.Pid)
	if errors.Is(err, syscall.ESRCH) {
		// The init already died (a setup step failed): wait-prepared reports
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
	bp := replyBufs.Get().(*replyBuf)
	defer replyBufs.Put(bp)
	buf, oob := bp.msg[:], bp.oob[:unix.CmsgSpace(4)]
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
	if err := r.UnmarshalBinary(buf[:n]); err != nil {
		closeAll(fds)
		return r, nil, false, fmt.Errorf("bad reply from init: %w", err)
	}
	if r.Error != "" {
		closeAll(fds)
		return r, nil, false, fmt.Errorf("init step %s: %s", r.Step, r.Error)
	}
	return r, fds, false, nil
}

// replyBuf is the buffer of one read of an init's reply: a reply is
// small, but a message longer than the buffer would be cut (SOCK_SEQPACKET),
// so it is large, and pooled: three replies per creation would otherwise
// be 192 KB of garbage per sandbox.
type replyBuf struct {
	msg [64 << 10]byte
	oob [32]byte // at least unix.CmsgSpace(4): one descriptor
}

var replyBufs = sync.Pool{New: func() any { return new(replyBuf) }}

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

// reply reads one reply of the init that must not end the exchange, and
// records the init's step timings.
func (c *creation) reply(ctx context.Context) ([]int, error) {
	r, fds, eof, err := c.readReply(ctx)
	if err != nil {
		return nil, err
	}
	if eof {
		return nil, c.initGone()
	}
	for _, t := range r.Timings {
		c.steps = append(c.steps, Step{Name: "init/" + t.Step, Duration: time.Duration(t.Nanos)})
	}
	return fds, nil
}

// waitPrepared waits for the prepared init and takes the Runtime API
// listener it sends (served from the claim on).
func (c *creation) waitPrepared(ctx context.Context) error {
	fds, err := c.reply(ctx)
	if err != nil {
		return err
	}
	if len(fds) != 1 {
		closeAll(fds)
		return fmt.Errorf("init sent %d descriptors, want 1", len(fds))
	}
	f := os.NewFile(uintptr(fds[0]), "runtime-api-listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("runtime API listener: %w", err)
	}
	c.s.ln = ln
	return nil
}

// claimCgroup sets the pooled sandbox's memory limit to the function's.
func (c *creation) claimCgroup(context.Context) error {
	return c.s.group.SetMemory(c.lim.MemoryBytes)
}

// sendClaim hands the init its nsinit.Claim with the function's
// directories as detached mounts: clones of the host's (open_tree),
// read-only, nosuid and nodev, which the init attaches in its own root
// (the host's file system is out of its reach since it was prepared).
func (c *creation) sendClaim(context.Context) error {
	b, err := c.d.initClaim(c.spec).MarshalBinary()
	if err != nil {
		return err
	}
	var fds []int
	defer func() { closeAll(fds) }() // the init holds its own copies
	for _, m := range claimMounts(c.spec) {
		fd, err := detachedMount(m[0])
		if err != nil {
			return fmt.Errorf("%s for %s: %w", m[0], m[1], err)
		}
		fds = append(fds, fd)
	}
	_, _, err = c.ctl.WriteMsgUnix(b, unix.UnixRights(fds...), nil)
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return nil // the init died already; exec says how
	}
	return err
}

func (c *creation) serve(context.Context) error {
	c.s.ln = newLimitListener(c.s.ln, max(c.d.cfg.MaxAPIConns, c.spec.RuntimeAPIConns))
	srv := &http.Server{
		Handler:  c.spec.RuntimeAPI,
		ErrorLog: slog.NewLogLogger(c.s.log.Handler(), slog.LevelDebug),
	}
	c.s.serve(srv)
	return nil
}

// cpuLimit sets the sandbox's CPU time.
func (c *creation) cpuLimit(context.Context) error {
	return c.s.group.SetCPU(c.lim.CPUMillis)
}

// cpuPin sets the CPUs the sandbox runs on (the init's thread, which execs
// the runtime: its affinity is inherited).
func (c *creation) cpuPin(context.Context) error {
	cs := c.d.cpus
	if cs == nil {
		return nil
	}
	idx := cs.assign(cs.cpusFor(c.lim.CPUMillis))
	if !c.s.holdCPUs(func() { cs.release(idx) }) {
		return nil // the init is gone already: exec reports why
	}
	err := setAffinity(c.s.cmd.Process.Pid, cs.mask(idx))
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("set CPU affinity: %w", err)
	}
	return nil
}

func (c *creation) resetPeak(context.Context) error {
	return c.s.group.ResetPeak()
}

// detachedMount clones the mount tree at host directory dir into a
// detached one, read-only, nosuid and nodev throughout, and returns its
// descriptor.
func detachedMount(dir string) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return -1, fmt.Errorf("open_tree: %w", err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("mount_setattr: %w", err)
	}
	return fd, nil
}

// exec lets the init exec the runtime once its claim steps are done, and
// waits for the execve: the init's timings (or its error), then EOF.
func (c *creation) exec(ctx context.Context) error {
	_, err := c.ctl.Write([]byte{nsinit.GoByte})
	if err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		return err
	}
	// On EPIPE the init died already (a claim step failed): its error
	// reply is still queued, or EOF says it died without one.
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
