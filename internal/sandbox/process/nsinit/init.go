package nsinit

import (
	"errors"
	"runtime"
	"syscall"
)

// MaybeRun runs the init (and never returns) if this process was started
// as one (its second argument is Marker, as /proc/self/cmdline shows);
// otherwise it returns at once. It is what process.MaybeRunInit calls; a
// dedicated init binary can call it without linking the host side of the
// driver.
func MaybeRun() {
	if isInit() {
		Run()
	}
}

// cmdlineBuf receives isInit's command line: a static array, as a 4 KiB one
// on the stack would make the goroutine's small first stack grow (a copy,
// and the stack maps of every frame looked up in the binary's tables) in
// every process started from this binary.
var cmdlineBuf [4096]byte

// isInit reports whether this process was started as an init, from its
// command line in /proc (package os, and so os.Args, is not initialised yet
// when early.go runs).
func isInit() bool {
	fd, err := syscall.Open("/proc/self/cmdline", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	buf := &cmdlineBuf
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if err != nil || m <= 0 {
			break
		}
		n += m
	}
	b := buf[:n]
	i := 0
	for i < len(b) && b[i] != 0 {
		i++
	}
	rest := b[min(i+1, len(b)):]
	return len(rest) > len(Marker) && string(rest[:len(Marker)]) == Marker && rest[len(Marker)] == 0
}

// Run is the init's main function; it never returns. It must be called
// before anything else touches the process (see process.MaybeRunInit).
func Run() {
	// Capabilities, the seccomp filter and execve are per thread: keep all
	// of it on this one.
	runtime.LockOSThread()
	if syscall.Getpid() != 1 {
		stderr("flint sandbox init: not started by the process sandbox driver (pid != 1)\n")
		syscall.Exit(2)
	}
	syscall.CloseOnExec(SockFD)
	cfg, err := readConfig()
	if err != nil {
		fail("config", err)
	}
	r := &runner{cfg: cfg}
	lnFD, err := r.prepare()
	if err != nil {
		fail(r.step, err)
	}
	// The host serves the Runtime API on the listener from here on; no
	// runtime can connect before the claim's execve.
	msg, _ := (&Ready{Timings: r.timings}).MarshalBinary()
	if err := syscall.Sendmsg(SockFD, msg, syscall.UnixRights(lnFD), nil, 0); err != nil {
		syscall.Exit(3)
	}
	syscall.Close(lnFD)
	// A pooled sandbox waits here until it is claimed (or killed).
	if r.claim, r.mountFDs, err = readClaim(); err != nil {
		fail("claim", err)
	}
	r.timings = r.timings[:0]
	if err := r.claimed(); err != nil {
		fail(r.step, err)
	}
	path, err := r.confine()
	if err != nil {
		fail(r.step, err)
	}
	// The host sets the function's cgroup limits meanwhile; Go says they
	// are in place (usually it is queued by now: no wait).
	var b [1]byte
	n, err := syscall.Read(SockFD, b[:])
	if err != nil || n != 1 || b[0] != GoByte {
		syscall.Exit(4) // the host gave up on us
	}
	err = r.execRuntime(path)
	fail(r.step, err)
}

// fail reports err to the host and exits.
func fail(step string, err error) {
	msg, _ := (&Ready{Step: step, Error: err.Error()}).MarshalBinary()
	_, _ = syscall.Write(SockFD, msg)
	syscall.Exit(1)
}

// msgBuf receives the host's messages (one at a time; decoding copies what
// it keeps). It is a static array rather than a heap buffer: a large
// allocation would grow the fresh heap (and be sampled by the memory
// profiler, which unwinds the stack through the binary's tables) in every
// sandbox, while untouched pages of an array cost nothing. A
// SOCK_SEQPACKET message larger than the host socket's send buffer
// (net.core.wmem_default, ~208 KiB unless raised) cannot be sent at all;
// one larger than msgBuf arrives truncated and is refused.
var msgBuf [256 << 10]byte

// errTooLarge refuses a message truncated to msgBuf.
var errTooLarge = errors.New("message from the host larger than 256 KiB")

// readMsg reads one message of the host into v.
func readMsg(v interface{ UnmarshalBinary([]byte) error }) error {
	n, _, flags, _, err := syscall.Recvmsg(SockFD, msgBuf[:], nil, 0)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("control socket closed")
	}
	if flags&syscall.MSG_TRUNC != 0 {
		return errTooLarge
	}
	return v.UnmarshalBinary(msgBuf[:n])
}

func readConfig() (*Config, error) {
	var cfg Config
	if err := readMsg(&cfg); err != nil {
		return nil, err
	}
	if cfg.UID == 0 || cfg.GID == 0 {
		return nil, errors.New("refusing config: root uid/gid")
	}
	return &cfg, nil
}

// readClaim reads the Claim and the mount descriptors that come with it.
func readClaim() (*Claim, []int, error) {
	var oob [64]byte // room for CmsgSpace(8*4): SCM_RIGHTS of up to 8 fds
	n, oobn, flags, _, err := syscall.Recvmsg(SockFD, msgBuf[:], oob[:syscall.CmsgSpace(8*4)], syscall.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, nil, err
	}
	var fds []int
	if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for i := range msgs {
			if got, err := syscall.ParseUnixRights(&msgs[i]); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if n == 0 {
		return nil, nil, errors.New("control socket closed")
	}
	if flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
		return nil, nil, errTooLarge
	}
	var c Claim
	if err := c.UnmarshalBinary(msgBuf[:n]); err != nil {
		return nil, nil, err
	}
	if len(c.Command) == 0 || len(c.Mounts) == 0 || c.Mounts[0] != "/var/task" {
		return nil, nil, errors.New("refusing claim: empty command or no code")
	}
	if len(fds) != len(c.Mounts) {
		return nil, nil, errors.New("refusing claim: " + itoa(len(c.Mounts)) + " mounts, " + itoa(len(fds)) + " descriptors")
	}
	return &c, fds, nil
}

// runner runs the init's named steps and records how long each took.
type runner struct {
	cfg      *Config
	claim    *Claim // nil until claimed
	mountFDs []int  // the claim's mounts (Claim.Mounts)
	step     string
	timings  []Timing
}

func (r *runner) run(name string, f func() error) error {
	r.step = name
	start := nanotime()
	err := f()
	r.timings = append(r.timings, Timing{Step: name, Nanos: nanotime() - start})
	return err
}

// step is one named step of the init.
type step struct {
	name string
	f    func() error
}

func (r *runner) runAll(steps []step) error {
	for _, s := range steps {
		if err := r.run(s.name, s.f); err != nil {
			return err
		}
	}
	return nil
}

// prepare builds what does not depend on the function, while still
// privileged, and returns the listening socket of the Runtime API.
func (r *runner) prepare() (int, error) {
	var steps []step
	if r.cfg.Net != nil {
		// First, while /proc is still the host's writable procfs (its
		// sys/net is this network namespace's): IPv6 is switched off here.
		steps = append(steps, step{"network", func() error { return SetupNet(r.cfg.Net) }})
	}
	steps = append(steps,
		step{"mount-private", func() error { return syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, "") }},
		step{"rootfs", r.buildRoot},
		step{"proc", r.mountProc},
		step{"dev", r.buildDev},
		step{"tmp", r.mountTmp},
		step{"hostname", func() error { return syscall.Sethostname([]byte(r.cfg.Hostname)) }},
		step{"loopback", loopbackUp},
	)
	if err := r.runAll(steps); err != nil {
		return -1, err
	}
	var fd int
	err := r.run("listen", func() (err error) {
		fd, err = listen(r.cfg.ListenPort)
		return err
	})
	if err != nil {
		return -1, err
	}
	if err := r.run("pivot-root", r.pivotRoot); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// claimed adds the function's part and makes the root read-only.
func (r *runner) claimed() error {
	return r.runAll([]step{
		{"code", r.mountCode},
		{"root-ro", readOnlyRoot},
	})
}

func loopbackUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	ifr, err := newIfreq("lo")
	if err != nil {
		return err
	}
	if err := ioctlIfreq(fd, syscall.SIOCGIFFLAGS, ifr); err != nil {
		return wrap("get lo flags", err)
	}
	ifr.setFlags(ifr.flags() | syscall.IFF_UP)
	if err := ioctlIfreq(fd, syscall.SIOCSIFFLAGS, ifr); err != nil {
		return wrap("set lo up", err)
	}
	return nil
}

func listen(port int) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return -1, wrap("bind 127.0.0.1:"+itoa(port), err)
	}
	if err := syscall.Listen(fd, 128); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}
