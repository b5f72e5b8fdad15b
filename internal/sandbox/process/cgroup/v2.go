package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// v2 drives the unified hierarchy: <root>/<parent>/<id>.
type v2 struct {
	root, parent string
	hasSwap      bool
}

var v2Required = []string{"memory", "pids", "cpu"}

func newV2(cfg Config) (*v2, error) {
	b, err := os.ReadFile(filepath.Join(cfg.Root, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("no unified hierarchy at %s: %w", cfg.Root, err)
	}
	have := strings.Fields(string(b))
	for _, c := range v2Required {
		if !slices.Contains(have, c) {
			return nil, fmt.Errorf("unified hierarchy at %s lacks the %s controller (has %q)", cfg.Root, c, have)
		}
	}
	if err := enableControllers(cfg.Root); err != nil {
		if !errors.Is(err, syscall.EBUSY) {
			return nil, err
		}
		// Root holds processes, and is not the hierarchy's true root (which
		// is exempt from the "no internal processes" rule): a container's
		// cgroup namespace, say, with Flint as its init. Move Flint into a
		// leaf of its own, as container inits do, and try again.
		if err := moveSelfToLeaf(cfg.Root, cfg.Parent+".server"); err != nil {
			return nil, err
		}
		if err := enableControllers(cfg.Root); err != nil {
			return nil, err
		}
	}
	parent := filepath.Join(cfg.Root, cfg.Parent)
	if err := mkdirParent(parent); err != nil {
		return nil, err
	}
	if err := enableControllers(parent); err != nil {
		return nil, err
	}
	v := &v2{root: cfg.Root, parent: cfg.Parent}
	if _, err := os.Stat(filepath.Join(parent, "memory.swap.max")); err == nil {
		v.hasSwap = true
	}
	return v, nil
}

// moveSelfToLeaf moves this process into the cgroup root/leaf (created if
// missing) when it is the only process in root, so that root can enable
// controllers for its children. Any other process in root is an error
// naming it: Flint does not move processes it does not own.
func moveSelfToLeaf(root, leaf string) error {
	b, err := os.ReadFile(filepath.Join(root, "cgroup.procs"))
	if err != nil {
		return fmt.Errorf("list the processes of %s: %w", root, err)
	}
	self := strconv.Itoa(os.Getpid())
	var others []string
	for _, p := range strings.Fields(string(b)) {
		if p != self {
			others = append(others, p)
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("cannot enable controllers in %s: it holds processes %s besides Flint; "+
			"run Flint in a cgroup of its own (cgroup v2 allows no processes where controllers are enabled)", root, strings.Join(others, " "))
	}
	dir := filepath.Join(root, leaf)
	if err := mkdirParent(dir); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "cgroup.procs"), self); err != nil {
		return fmt.Errorf("move Flint into %s: %w", dir, err)
	}
	return nil
}

// enableControllers enables the required controllers for dir's children.
// It fails (EBUSY) when dir itself holds processes, the cgroup v2 "no
// internal processes" rule: run Flint in a leaf of its own then.
func enableControllers(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("read subtree_control: %w", err)
	}
	have := strings.Fields(string(b))
	var add []string
	for _, c := range v2Required {
		if !slices.Contains(have, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(add, " ")); err != nil {
		return fmt.Errorf("enable controllers in %s (does it hold processes?): %w", dir, err)
	}
	return nil
}

func (v *v2) group(id string) *Group {
	dir := filepath.Join(v.root, v.parent, id)
	return &Group{id: id, version: V2, dirs: []string{dir}, memDir: dir, cpuDir: dir}
}

func (v *v2) parents() []string { return []string{filepath.Join(v.root, v.parent)} }

func (v *v2) create(id string, lim Limits) (g *Group, err error) {
	g = v.group(id)
	dir := g.dirs[0]
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("mkdir: %w", err)
	}
	defer func() {
		if err != nil {
			_ = rmdirRetry(dir, time.Now().Add(time.Second))
		}
	}()
	if lim.MemoryBytes > 0 {
		if err := writeFile(filepath.Join(dir, "memory.max"), strconv.FormatInt(lim.MemoryBytes, 10)); err != nil {
			return nil, err
		}
		if v.hasSwap {
			if err := writeFile(filepath.Join(dir, "memory.swap.max"), "0"); err != nil {
				return nil, err
			}
		}
	}
	if lim.Pids > 0 {
		if err := writeFile(filepath.Join(dir, "pids.max"), strconv.FormatInt(lim.Pids, 10)); err != nil {
			return nil, err
		}
	}
	if lim.CPUMillis > 0 {
		if err := g.SetCPU(lim.CPUMillis); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func (g *Group) setCPUv2(millis int64) error {
	q := fmt.Sprintf("%d %d", cfsQuota(millis), cfsPeriodUs)
	if err := writeFile(filepath.Join(g.cpuDir, "cpu.max"), q); err != nil {
		return err
	}
	w := min(10000, max(1, 100*millis/1000))
	if err := writeFile(filepath.Join(g.cpuDir, "cpu.weight"), strconv.FormatInt(w, 10)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
