package nsinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// MaybeRun runs the init (and never returns) if this process was started
// as one (os.Args[1] == Marker); otherwise it returns at once. It is what
// process.MaybeRunInit calls; a dedicated init binary can call it without
// linking the host side of the driver.
func MaybeRun() {
	if len(os.Args) > 1 && os.Args[1] == Marker {
		Run()
	}
}

// Run is the init's main function; it never returns. It must be called
// before anything else touches the process (see process.MaybeRunInit).
func Run() {
	// Capabilities, the seccomp filter and execve are per thread: keep all
	// of it on this one.
	runtime.LockOSThread()
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "flint sandbox init: not started by the process sandbox driver (pid != 1)")
		os.Exit(2)
	}
	unix.CloseOnExec(SockFD)
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
	msg, _ := json.Marshal(Ready{Timings: r.timings})
	if err := unix.Sendmsg(SockFD, msg, unix.UnixRights(lnFD), nil, 0); err != nil {
		os.Exit(3)
	}
	unix.Close(lnFD)
	// A pooled sandbox waits here until it is claimed (or killed).
	if r.claim, r.mountFDs, err = readClaim(); err != nil {
		fail("claim", err)
	}
	r.timings = r.timings[:0]
	if err := r.claimed(); err != nil {
		fail(r.step, err)
	}
	// The host sets the function's cgroup limits meanwhile; Go says they
	// are in place (usually it is queued by now: no wait).
	var b [1]byte
	n, err := unix.Read(SockFD, b[:])
	if err != nil || n != 1 || b[0] != GoByte {
		os.Exit(4) // the host gave up on us
	}
	err = r.execRuntime()
	fail(r.step, err)
}

// fail reports err to the host and exits.
func fail(step string, err error) {
	msg, _ := json.Marshal(Ready{Step: step, Error: err.Error()})
	_, _ = unix.Write(SockFD, msg)
	os.Exit(1)
}

// readMsg reads one message of the host into v.
func readMsg(v any) error {
	buf := make([]byte, 1<<20)
	n, err := unix.Read(SockFD, buf)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("control socket closed")
	}
	return json.Unmarshal(buf[:n], v)
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
	buf := make([]byte, 1<<20)
	oob := make([]byte, unix.CmsgSpace(8*4))
	n, oobn, _, _, err := unix.Recvmsg(SockFD, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, nil, err
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for i := range msgs {
			if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if n == 0 {
		return nil, nil, errors.New("control socket closed")
	}
	var c Claim
	if err := json.Unmarshal(buf[:n], &c); err != nil {
		return nil, nil, err
	}
	if len(c.Command) == 0 || len(c.Mounts) == 0 || c.Mounts[0] != "/var/task" {
		return nil, nil, errors.New("refusing claim: empty command or no code")
	}
	if len(fds) != len(c.Mounts) {
		return nil, nil, fmt.Errorf("refusing claim: %d mounts, %d descriptors", len(c.Mounts), len(fds))
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
	start := time.Now()
	err := f()
	r.timings = append(r.timings, Timing{Step: name, Nanos: int64(time.Since(start))})
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
		step{"mount-private", func() error { return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "") }},
		step{"rootfs", r.buildRoot},
		step{"proc", r.mountProc},
		step{"dev", r.buildDev},
		step{"hostname", func() error { return unix.Sethostname([]byte(r.cfg.Hostname)) }},
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
		unix.Close(fd)
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
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

func listen(port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind 127.0.0.1:%d: %w", port, err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
