// Package process is the process sandbox driver: it isolates a function's
// runtime with Linux namespaces (mount, pid, ipc, uts, net, cgroup),
// cgroups (v1 or v2), an unprivileged uid, no capabilities and a seccomp
// filter. See docs/sandbox-process.md for the design and MaybeRunInit for
// the one line of wiring every binary using it needs.
package process

import (
	"context"
	"errors"
	"fmt"
	"github.com/flintdev/flint/internal/sandbox/egress"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process/cgroup"
	"github.com/flintdev/flint/internal/sandbox/process/nsinit"
	"github.com/flintdev/flint/internal/sandbox/syscallfilter"
)

// Defaults of Config.
const (
	DefaultInitPath     = "/proc/self/exe"
	DefaultCgroupRoot   = "/sys/fs/cgroup"
	DefaultCgroupParent = "flint"
	// DefaultUID and DefaultGID are those of Lambda's sbx_user1051.
	DefaultUID = 993
	DefaultGID = 990
	// DefaultPidsMax bounds the tasks (processes and threads) of a sandbox.
	DefaultPidsMax = 1024
	// DefaultEphemeralStorageMB sizes /tmp when Spec.EphemeralStorageMB
	// is 0 (Lambda's default).
	DefaultEphemeralStorageMB = 512
	// DefaultNoFile is the runtime's RLIMIT_NOFILE.
	DefaultNoFile = 1024
	// DefaultMaxAPIConns bounds the Runtime API connections the host
	// serves per sandbox at a time (runtimes use one or two).
	DefaultMaxAPIConns = 32
	// RuntimeAPIPort is where the Runtime API listens inside a sandbox,
	// on 127.0.0.1 as on Lambda.
	RuntimeAPIPort = 9001
	// MBPerVCPU is the memory size that buys one full vCPU, as on Lambda.
	MBPerVCPU = 1769
)

// Config configures the driver. Zero values take the defaults above.
type Config struct {
	// InitPath is the binary started as sandbox init; it must call
	// MaybeRunInit first thing.
	InitPath string
	// StateDir is a host directory for the driver's scratch space (the
	// mount point of sandbox root file systems). Required.
	StateDir string
	// CgroupRoot is where cgroup file systems are mounted; CgroupParent
	// groups all sandboxes' cgroups beneath it; CgroupVersion forces v1 or
	// v2 (0 detects).
	CgroupRoot    string
	CgroupParent  string
	CgroupVersion cgroup.Version
	// UID and GID run the function's code (never 0).
	UID, GID int
	// PidsMax and NoFile are per-sandbox limits.
	PidsMax int
	NoFile  int
	// MaxAPIConns bounds the concurrent connections a sandbox may hold
	// to its Runtime API (each costs the host a descriptor); more are
	// closed as soon as they are accepted.
	MaxAPIConns int
	// Egress, when set, gives every sandbox outbound network access
	// through a veth pair and NAT, still refusing the host, link-local
	// and private addresses and other sandboxes (see EgressConfig). Nil
	// (the default): a sandbox's network namespace has only loopback.
	// A driver with egress must be closed (Close removes its nftables
	// table).
	Egress *EgressConfig
	// ShareCPUs lets every sandbox run on every CPU of the host. By
	// default a sandbox runs on as many CPUs as its vCPUs round up to
	// (MBPerVCPU), the least used at its creation (see cpus.go); its CPU
	// time is limited by its cgroup either way.
	ShareCPUs bool
	// Logger receives debug lines (per-step create timings) and errors.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.InitPath == "" {
		c.InitPath = DefaultInitPath
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = DefaultCgroupRoot
	}
	if c.CgroupParent == "" {
		c.CgroupParent = DefaultCgroupParent
	}
	if c.UID == 0 {
		c.UID = DefaultUID
	}
	if c.GID == 0 {
		c.GID = DefaultGID
	}
	if c.PidsMax == 0 {
		c.PidsMax = DefaultPidsMax
	}
	if c.NoFile == 0 {
		c.NoFile = DefaultNoFile
	}
	if c.MaxAPIConns == 0 {
		c.MaxAPIConns = DefaultMaxAPIConns
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration error (after defaults are applied).
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case c.StateDir == "" || !filepath.IsAbs(c.StateDir):
		return fmt.Errorf("process: StateDir %q must be an absolute path", c.StateDir)
	case c.UID < 0 || c.GID < 0:
		return errors.New("process: UID and GID must not be negative (0 picks the default)")
	case c.PidsMax < 0 || c.NoFile < 0 || c.MaxAPIConns < 0:
		return errors.New("process: PidsMax, NoFile and MaxAPIConns must not be negative")
	}
	if c.Egress != nil {
		if err := c.Egress.Validate(); err != nil {
			return fmt.Errorf("process: %w", err)
		}
	}
	return nil
}

// Driver creates process sandboxes. It is safe for concurrent use; its
// fields are immutable after New.
type Driver struct {
	cfg     Config
	cgroups *cgroup.Manager
	// Prepared once: the seccomp program, the host paths and /etc files.
	seccomp  []syscall.SockFilter
	host     []nsinit.HostPath
	etcBinds []string
	etc      map[string]string
	rootDir  string
	egress   *egress.Egress // nil without Config.Egress
	cpus     *cpuSet        // nil with Config.ShareCPUs
	// cloneIntoCgroup: the init starts in its cgroup (cgroup v2 and clone3
	// with CLONE_INTO_CGROUP) instead of being moved there after its
	// start. A move takes the kernel's cgroup_threadgroup_rwsem for
	// writing, which waits for an RCU grace period while every fork, exec
	// and thread creation on the host waits for it.
	cloneIntoCgroup bool
}

var _ sandbox.Driver = (*Driver)(nil)

// New checks the host (root, cgroups, seccomp) and prepares everything
// sandboxes share.
func New(cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if os.Geteuid() != 0 {
		return nil, errors.New("process: the process sandbox driver must run as root")
	}
	if _, err := os.Stat(cfg.InitPath); err != nil {
		return nil, fmt.Errorf("process: init binary: %w", err)
	}
	cg, err := cgroup.New(cgroup.Config{Root: cfg.CgroupRoot, Parent: cfg.CgroupParent, Version: cfg.CgroupVersion})
	if err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	prog, err := syscallfilter.Program()
	if err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	// The init's copy of the type (nsinit does not import x/sys/unix).
	filter := make([]syscall.SockFilter, len(prog))
	for i, f := range prog {
		filter[i] = syscall.SockFilter{Code: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
	}
	host, etcBinds, err := scanHost()
	if err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	root := filepath.Join(cfg.StateDir, "rootfs")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("process: state dir: %w", err)
	}
	d := &Driver{
		cfg: cfg, cgroups: cg, seccomp: filter, host: host, etcBinds: etcBinds,
		etc: etcFiles(cfg.UID, cfg.GID), rootDir: root,
		cloneIntoCgroup: cg.CanCloneInto(),
	}
	growFDTable(fdTableSize)
	if !cfg.ShareCPUs {
		if d.cpus, err = newCPUSet(); err != nil {
			return nil, fmt.Errorf("process: %w", err)
		}
	}
	if cfg.Egress != nil {
		if d.egress, err = egress.Start(*cfg.Egress, cfg.Logger); err != nil {
			return nil, fmt.Errorf("process: %w", err)
		}
		if rc := cfg.Egress.ResolvConf(); rc != "" {
			d.etc["resolv.conf"] = rc
		}
	}
	cfg.Logger.Debug("process sandbox driver ready", "cgroup", cg.Version().String(), "clone_into_cgroup", d.cloneIntoCgroup, "state_dir", cfg.StateDir)
	return d, nil
}

// RemoveStale kills and removes the cgroups of sandboxes a previous run of
// Flint left behind when it died (its sandboxes died with it, their cgroups
// did not). Call it at start-up, before the first Create, and only when no
// other process uses the same CgroupParent. It returns how many it removed.
func (d *Driver) RemoveStale(ctx context.Context) (int, error) {
	deadline := time.Now().Add(teardownGrace)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	n, err := d.cgroups.RemoveStale(deadline)
	if err != nil {
		return n, fmt.Errorf("process: remove stale sandboxes: %w", err)
	}
	return n, nil
}

// Close releases what the driver holds on the host beyond its sandboxes:
// the cgroup parent directories once empty and, with egress, the nftables
// table. Destroy the sandboxes first: the links of any still alive are
// deleted before the table goes (they lose their network rather than their
// filter).
func (d *Driver) Close(ctx context.Context) error {
	defer d.cgroups.RemoveParents()
	if d.egress == nil {
		return nil
	}
	return d.egress.Close(ctx)
}

// Name implements sandbox.Driver.
func (d *Driver) Name() string { return "process" }

// CgroupVersion reports the cgroup version the driver uses.
func (d *Driver) CgroupVersion() cgroup.Version { return d.cgroups.Version() }

// validID reports whether id matches [a-zA-Z0-9-]{1,64} (Spec.ID).
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func (d *Driver) validateSpec(spec *sandbox.Spec) error {
	switch {
	case !validID(spec.ID):
		return fmt.Errorf("invalid sandbox id %q", spec.ID)
	case !filepath.IsAbs(spec.CodeDir):
		return fmt.Errorf("sandbox %s: CodeDir %q must be absolute", spec.ID, spec.CodeDir)
	case spec.RuntimeDir != "" && !filepath.IsAbs(spec.RuntimeDir):
		return fmt.Errorf("sandbox %s: RuntimeDir %q must be absolute", spec.ID, spec.RuntimeDir)
	case spec.OptDir != "" && !filepath.IsAbs(spec.OptDir):
		return fmt.Errorf("sandbox %s: OptDir %q must be absolute", spec.ID, spec.OptDir)
	case len(spec.Command) == 0 || spec.Command[0] == "":
		return fmt.Errorf("sandbox %s: empty Command", spec.ID)
	case spec.RuntimeAPI == nil:
		return fmt.Errorf("sandbox %s: nil RuntimeAPI", spec.ID)
	case spec.MemoryMB <= 0:
		return fmt.Errorf("sandbox %s: MemoryMB must be positive", spec.ID)
	case spec.EphemeralStorageMB < 0:
		return fmt.Errorf("sandbox %s: EphemeralStorageMB must not be negative", spec.ID)
	}
	if spec.EphemeralStorageMB == 0 {
		spec.EphemeralStorageMB = DefaultEphemeralStorageMB
	}
	for _, kv := range spec.Env {
		if !strings.Contains(kv, "=") || strings.ContainsRune(kv, 0) {
			return fmt.Errorf("sandbox %s: malformed environment entry", spec.ID)
		}
	}
	return nil
}

// initConfig is what the init of sandbox id gets first.
func (d *Driver) initConfig(id string) *nsinit.Config {
	return &nsinit.Config{
		ID: id, Root: d.rootDir, Hostname: "localhost",
		Host: d.host, EtcFiles: d.etc, EtcBinds: d.etcBinds,
		DevNodes: devNodes, UID: d.cfg.UID, GID: d.cfg.GID, NoFile: uint64(d.cfg.NoFile),
		ListenPort: RuntimeAPIPort, Seccomp: d.seccomp,
	}
}

// initClaim is the function's part the init gets at the claim.
func (d *Driver) initClaim(spec *sandbox.Spec) *nsinit.Claim {
	env := make([]string, 0, len(spec.Env)+1)
	for _, kv := range spec.Env {
		if !strings.HasPrefix(kv, "AWS_LAMBDA_RUNTIME_API=") {
			env = append(env, kv)
		}
	}
	env = append(env, fmt.Sprintf("AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d", RuntimeAPIPort))
	return &nsinit.Claim{
		Mounts: claimMounts(spec).targets(),
		TmpMB:  spec.EphemeralStorageMB, Command: spec.Command, Env: env,
	}
}

// mountList pairs host directories with where the sandbox sees them.
type mountList [][2]string

// claimMounts lists the host directories a claim attaches, in
// nsinit.Claim.Mounts order: the code first.
func claimMounts(spec *sandbox.Spec) mountList {
	m := mountList{{spec.CodeDir, "/var/task"}}
	if spec.RuntimeDir != "" {
		m = append(m, [2]string{spec.RuntimeDir, "/var/runtime"})
	}
	if spec.OptDir != "" {
		m = append(m, [2]string{spec.OptDir, "/opt"})
	}
	return m
}

func (m mountList) targets() []string {
	t := make([]string, len(m))
	for i, p := range m {
		t[i] = p[1]
	}
	return t
}

// limits derives a sandbox's cgroup limits from its spec: CPU in
// proportion to memory, one vCPU per MBPerVCPU.
func (d *Driver) limits(spec *sandbox.Spec) cgroup.Limits {
	return cgroup.Limits{
		MemoryBytes: int64(spec.MemoryMB) << 20,
		Pids:        int64(d.cfg.PidsMax),
		CPUMillis:   max(1, int64(spec.MemoryMB)*1000/MBPerVCPU),
	}
}

// Create implements sandbox.Driver. The steps are listed in create.go;
// Sandbox.Timings reports their durations. The runtime runs as UID:GID, so
// Spec.CodeDir, Spec.RuntimeDir and Spec.OptDir must be readable (and their
// executables executable) by that user; the directories themselves are
// mounted, so the permissions of their parents do not matter.
func (d *Driver) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	s, err := d.create(ctx, &spec)
	if err != nil {
		return nil, err
	}
	return s, nil
}
