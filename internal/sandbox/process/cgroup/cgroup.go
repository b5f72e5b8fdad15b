// Package cgroup creates and tears down the per-sandbox control groups of the
// process sandbox driver, on cgroup v1 (one hierarchy per controller) and on
// cgroup v2 (the unified hierarchy).
//
// Layout: every sandbox gets <root>/<parent>/<id> (v2) or
// <root>/<controller>/<parent>/<id> for each v1 controller it uses (memory,
// pids, cpu). A Manager is built once per driver
// by New; it detects the version and checks that the needed controllers are
// usable, so that a misconfigured host fails at start-up rather than at the
// first sandbox.
//
// All types are safe for concurrent use: their state is immutable after
// construction, except the descriptors a Group keeps open for Stats (see
// Group), and every operation goes straight to the kernel's files.
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Version is the cgroup version a Manager drives.
type Version int

// The cgroup versions.
const (
	V1 Version = 1
	V2 Version = 2
)

func (v Version) String() string { return "v" + strconv.Itoa(int(v)) }

// Config configures a Manager.
type Config struct {
	// Root is where cgroup file systems are mounted ("/sys/fs/cgroup").
	Root string
	// Parent is the directory grouping every sandbox's cgroup ("flint").
	Parent string
	// Version forces a version (0 detects: v2 when Root is a unified mount
	// with the memory, pids and cpu controllers, else v1).
	Version Version
}

// validName reports whether s is a safe cgroup directory name:
// [a-zA-Z0-9_.-]{1,64}, not "." or "..". (No regexp: this package is linked
// into the sandbox init, whose start-up time counts.)
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		return fmt.Errorf("cgroup: Root %q must be an absolute path", c.Root)
	}
	if !validName(c.Parent) {
		return fmt.Errorf("cgroup: Parent %q must match [a-zA-Z0-9_.-]{1,64}", c.Parent)
	}
	if c.Version != 0 && c.Version != V1 && c.Version != V2 {
		return fmt.Errorf("cgroup: unknown Version %d", c.Version)
	}
	return nil
}

// Limits are the resource limits of one sandbox.
type Limits struct {
	// MemoryBytes limits memory (swap is disabled where the kernel allows).
	MemoryBytes int64
	// Pids limits the number of tasks (processes and threads).
	Pids int64
	// CPUMillis is the CPU bandwidth in thousandths of one CPU (1000 = one
	// full CPU); 0 means unlimited.
	CPUMillis int64
}

// Manager creates the cgroups of sandboxes. Build it with New.
type Manager struct {
	cfg  Config
	impl impl
}

// impl is what differs between v1 and v2.
type impl interface {
	create(id string, lim Limits) (*Group, error)
	// group returns the Group of an existing cgroup.
	group(id string) *Group
	// parents lists the parent directories.
	parents() []string
}

// New detects the cgroup version under cfg.Root, checks the controllers and
// creates the parent cgroup(s). It fails with a clear message when neither
// version is usable.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg}
	var errV2, errV1 error
	if cfg.Version == 0 || cfg.Version == V2 {
		var v *v2
		if v, errV2 = newV2(cfg); errV2 == nil {
			m.impl = v
			return m, nil
		}
		if cfg.Version == V2 {
			return nil, errV2
		}
	}
	var v *v1
	if v, errV1 = newV1(cfg); errV1 == nil {
		m.impl = v
		return m, nil
	}
	if cfg.Version == V1 {
		return nil, errV1
	}
	return nil, fmt.Errorf("cgroup: no usable cgroup hierarchy under %s: v2: %v; v1: %w", cfg.Root, errV2, errV1)
}

// Version reports the cgroup version in use.
func (m *Manager) Version() Version {
	if _, ok := m.impl.(*v2); ok {
		return V2
	}
	return V1
}

// Create makes the cgroup(s) of sandbox id and applies lim, and opens the
// files Group.Stats reads (two descriptors, closed by Group.Destroy). On
// error nothing is left behind.
func (m *Manager) Create(id string, lim Limits) (*Group, error) {
	if !validName(id) {
		return nil, fmt.Errorf("cgroup: invalid id %q", id)
	}
	g, err := m.impl.create(id, lim)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", id, err)
	}
	if err := g.openStatFiles(); err != nil {
		_ = g.Destroy(time.Now().Add(time.Second))
		return nil, fmt.Errorf("cgroup %s: %w", id, err)
	}
	return g, nil
}

// RemoveStale kills the processes of every sandbox cgroup under the parent
// and removes them: the cgroups left behind by a Flint that died without
// destroying its sandboxes. Call it only while no sandbox of this parent
// exists (at start-up). It returns how many groups it removed.
func (m *Manager) RemoveStale(deadline time.Time) (int, error) {
	ids := map[string]bool{}
	for _, parent := range m.impl.parents() {
		ents, err := os.ReadDir(parent)
		if err != nil {
			return 0, fmt.Errorf("cgroup: list %s: %w", parent, err)
		}
		for _, e := range ents {
			if e.IsDir() && validName(e.Name()) {
				ids[e.Name()] = true
			}
		}
	}
	var errs []error
	n := 0
	for id := range ids {
		g := m.impl.group(id)
		if err := g.Destroy(deadline); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// RemoveParents removes the parent directories if no group is left in
// them (best effort: a parent still holding groups stays).
func (m *Manager) RemoveParents() {
	for _, p := range m.impl.parents() {
		_ = os.Remove(p)
	}
}

// RemoveParent removes the parent directory name under root wherever either
// cgroup version puts it (<root>/<name> and <root>/unified/<name> for v2,
// <root>/<controller>/<name> for each v1 controller), when it is empty:
// what is missing or still holds groups is left alone. Unlike
// Manager.RemoveParents it needs no Manager (so creates nothing); tests call
// it when they end.
func RemoveParent(root, name string) {
	if !validName(name) {
		return
	}
	for _, d := range []string{"", "unified", "memory", "pids", "cpu", "cpu,cpuacct"} {
		_ = os.Remove(filepath.Join(root, d, name))
	}
}

// Group is one sandbox's cgroup (v2) or set of cgroups (v1).
type Group struct {
	id      string
	version Version
	// dirs are the cgroup directories; dirs[0] holds cgroup.procs used to
	// list members (the unified dir on v2, the pids controller on v1).
	dirs []string
	// memDir holds the memory controller files.
	memDir string
	// cpuDir holds the cpu controller files.
	cpuDir string
	// memsw: (v1) the memory controller has memory.memsw.* (swap
	// accounting), whose limit Create sets to the memory limit.
	memsw bool

	// mu guards files: Stats holds it while it reads through them (and
	// their shared buffer), Destroy while it closes them.
	mu sync.Mutex
	// files are the descriptors Stats reads through; nil for a Group not
	// made by Create (RemoveStale's) and after Destroy, when Stats reads
	// the files by path.
	files *statFiles
}

// SetCPU sets the CPU bandwidth in thousandths of one CPU (1000 = one full
// CPU; at least 1). Create applies Limits.CPUMillis when it is set; a
// caller that wants its own setup to run unthrottled creates the group
// with CPUMillis 0 and calls SetCPU later.
func (g *Group) SetCPU(millis int64) error {
	if millis <= 0 {
		return fmt.Errorf("cgroup %s: CPU millis must be positive, not %d", g.id, millis)
	}
	var err error
	if g.version == V2 {
		err = g.setCPUv2(millis)
	} else {
		err = g.setCPUv1(millis)
	}
	if err != nil {
		return fmt.Errorf("cgroup %s: set cpu: %w", g.id, err)
	}
	return nil
}

// ID is the sandbox id the group belongs to.
func (g *Group) ID() string { return g.id }

// Dirs lists the group's cgroup directories.
func (g *Group) Dirs() []string { return append([]string(nil), g.dirs...) }

// Add moves process pid into the group (into every v1 hierarchy).
func (g *Group) Add(pid int) error {
	s := strconv.Itoa(pid)
	for _, d := range g.dirs {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), s); err != nil {
			return fmt.Errorf("cgroup %s: add pid %d: %w", g.id, pid, err)
		}
	}
	return nil
}

// Procs lists the pids currently in the group.
func (g *Group) Procs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(g.dirs[0], "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: list procs: %w", g.id, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// ResetPeak restarts peak memory tracking from the current usage (v1;
// a no-op on v2, whose memory.peak reset works per open file only).
func (g *Group) ResetPeak() error {
	if g.version == V2 {
		return nil
	}
	if err := writeFile(filepath.Join(g.memDir, "memory.max_usage_in_bytes"), "0"); err != nil {
		return fmt.Errorf("cgroup %s: reset peak: %w", g.id, err)
	}
	return nil
}

// Kill SIGKILLs every process in the group until it is empty or deadline
// passes. On v2 it uses cgroup.kill when the kernel has it; on v1 it sends
// SIGKILL to every member round after round, so that children forked
// meanwhile die too (the process driver needs none of this in practice:
// its sandboxes die with their pid namespace's init).
func (g *Group) Kill(deadline time.Time) error {
	if g.version == V2 {
		if err := writeFile(filepath.Join(g.dirs[0], "cgroup.kill"), "1"); err == nil {
			return g.waitEmpty(deadline)
		}
	}
	for i := 0; ; i++ {
		pids, err := g.Procs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: %d processes survive SIGKILL", g.id, len(pids))
		}
		time.Sleep(backoff(i))
	}
	return nil
}

func (g *Group) waitEmpty(deadline time.Time) error {
	for i := 0; ; i++ {
		pids, err := g.Procs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: %d processes survive cgroup.kill", g.id, len(pids))
		}
		time.Sleep(backoff(i))
	}
}

// Destroy kills every member and removes the group's directories. It is
// idempotent: directories already gone are not an error. It first closes
// the descriptors Create opened for Stats, whatever else happens, so no
// descriptor outlives a Destroy call (Stats still works, by path, until the
// directories are gone).
func (g *Group) Destroy(deadline time.Time) error {
	g.closeStatFiles()
	if err := g.Kill(deadline); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var errs []error
	for _, d := range g.dirs {
		if err := rmdirRetry(d, deadline); err != nil {
			errs = append(errs, fmt.Errorf("cgroup %s: %w", g.id, err))
		}
	}
	return errors.Join(errs...)
}

// rmdirRetry removes a cgroup directory; the kernel refuses (EBUSY) while
// dying tasks are still being accounted, so it retries until deadline.
func rmdirRetry(dir string, deadline time.Time) error {
	for i := 0; ; i++ {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("rmdir %s: %w", dir, err)
		}
		time.Sleep(backoff(i))
	}
}

func backoff(i int) time.Duration {
	d := 100 * time.Microsecond << min(i, 7)
	return d
}

func writeFile(path, value string) error {
	// Plain system calls: an *os.File of a cgroup file (pollable) would
	// be registered with the runtime's epoll and unregistered again, two
	// more system calls per write, ten writes per sandbox creation. No
	// O_TRUNC either: control files take each write whole.
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	for err == syscall.EINTR {
		fd, err = syscall.Open(path, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	_, err = syscall.Write(fd, []byte(value))
	for err == syscall.EINTR {
		_, err = syscall.Write(fd, []byte(value))
	}
	if cerr := syscall.Close(fd); err == nil && cerr != nil {
		return &os.PathError{Op: "close", Path: path, Err: cerr}
	}
	if err != nil {
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}
