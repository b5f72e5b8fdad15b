package process

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process/cgroup"
)

// PrepareMemoryMB is the memory limit of a prepared sandbox until its
// claim sets the function's (Lambda's smallest memory size: any function
// fits a prepared sandbox's use).
const PrepareMemoryMB = 128

// ErrClaimed is returned by a second Claim of the same prepared sandbox.
var ErrClaimed = errors.New("process: prepared sandbox already claimed or destroyed")

var _ sandbox.Preparer = (*Driver)(nil)

// Prepare implements sandbox.Preparer: it runs the first half of Create's
// steps (create.go) under a pool id of its own ("pool-" and random hex,
// the name of its cgroups until the claim renames them): the init runs in
// its namespaces and cgroups, as root still, with the root file system
// built but for the function's directories and /tmp, the Runtime API
// socket listening, and the host's file system already detached (the
// claim brings the code as detached mounts). No function code can run
// before the claim, which hands over the rest (see nsinit's protocol).
func (d *Driver) Prepare(ctx context.Context) (sandbox.Prepared, error) {
	var b [8]byte
	rand.Read(b[:])
	lim := cgroup.Limits{MemoryBytes: PrepareMemoryMB << 20, Pids: int64(d.cfg.PidsMax)}
	c := d.newCreation("pool-"+hex.EncodeToString(b[:]), lim)
	if err := c.run(ctx, c.prepareSteps()); err != nil {
		return nil, err
	}
	p := &prepared{c: c, mem: anonBytes(c.s.cmd.Process.Pid)}
	if st, err := c.s.group.Stats(); err == nil {
		p.mem = max(p.mem, st.MaxMemoryBytes)
	}
	// The timings a claimed sandbox reports are its claim's: what its
	// cold start cost.
	c.steps = nil
	return p, nil
}

// prepared is a sandbox.Prepared of the process driver: a creation
// stopped between its two step lists.
type prepared struct {
	c   *creation
	mem uint64

	mu   sync.Mutex
	used bool // Claim or Destroy was called
}

func (p *prepared) take() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used {
		return false
	}
	p.used = true
	return true
}

// Claim implements sandbox.Prepared.
func (p *prepared) Claim(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	if !p.take() {
		return nil, ErrClaimed
	}
	c := p.c
	if err := c.d.validateSpec(&spec); err != nil {
		c.abort()
		return nil, err
	}
	select {
	case <-c.s.done:
		err := c.s.Err()
		c.abort()
		return nil, fmt.Errorf("claim sandbox %s: prepared sandbox died: %w", spec.ID, err)
	default:
	}
	c.spec, c.lim = &spec, c.d.limits(&spec)
	c.s.rename(spec.ID, c.d.cfg.Logger)
	c.s.out.setWriter(spec.Output, c.s.log)
	if err := c.run(ctx, c.claimSteps(true)); err != nil {
		return nil, err
	}
	s := c.finish(ctx)
	if c.d.cgroups.Version() == cgroup.V1 {
		s.renameGroup(c.d.cgroups, spec.ID)
	}
	return s, nil
}

// Done implements sandbox.Prepared.
func (p *prepared) Done() <-chan struct{} { return p.c.s.done }

// MemoryBytes implements sandbox.Prepared: the init's private memory once
// prepared, or its cgroups' peak if more (what the init allocated before
// it joined its cgroups is charged to the host's).
func (p *prepared) MemoryBytes() uint64 { return p.mem }

// Destroy implements sandbox.Prepared.
func (p *prepared) Destroy(ctx context.Context) error {
	if !p.take() {
		return nil
	}
	p.c.closeChannels()
	return p.c.s.Destroy(ctx)
}

// anonBytes is the private (anonymous and shared-memory) resident memory
// of process pid, 0 if unknown.
func anonBytes(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	var kb uint64
	for _, line := range strings.Split(string(b), "\n") {
		for _, key := range []string{"RssAnon:", "RssShmem:"} {
			if v, ok := strings.CutPrefix(line, key); ok {
				if n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
					kb += n
				}
			}
		}
	}
	return kb << 10
}
