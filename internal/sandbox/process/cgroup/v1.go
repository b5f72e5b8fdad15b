package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// v1 drives one hierarchy per controller: <root>/<controller>/<parent>/<id>.
type v1 struct {
	root, parent string
	hasMemsw     bool
}

// cfsPeriodUs is the CFS bandwidth period used on both versions.
const cfsPeriodUs = 100000

var v1Required = []string{"pids", "memory", "cpu"}

func newV1(cfg Config) (*v1, error) {
	v := &v1{root: cfg.Root, parent: cfg.Parent}
	for _, c := range v1Required {
		if _, err := os.Stat(filepath.Join(cfg.Root, c, "cgroup.procs")); err != nil {
			return nil, fmt.Errorf("v1 controller %s not mounted at %s: %w", c, filepath.Join(cfg.Root, c), err)
		}
		if err := mkdirParent(filepath.Join(cfg.Root, c, cfg.Parent)); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.Root, "memory", cfg.Parent, "memory.memsw.limit_in_bytes")); err == nil {
		v.hasMemsw = true
	}
	return v, nil
}

func mkdirParent(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create parent cgroup: %w", err)
	}
	return nil
}

func (v *v1) dir(ctrl, id string) string { return filepath.Join(v.root, ctrl, v.parent, id) }

func (v *v1) group(id string) *Group {
	g := &Group{id: id, version: V1, memDir: v.dir("memory", id), cpuDir: v.dir("cpu", id), memsw: v.hasMemsw}
	for _, c := range v1Required {
		g.dirs = append(g.dirs, v.dir(c, id))
	}
	return g
}

func (v *v1) parents() []string {
	var ps []string
	for _, c := range v1Required {
		ps = append(ps, filepath.Join(v.root, c, v.parent))
	}
	return ps
}

func (v *v1) create(id string, lim Limits) (g *Group, err error) {
	g = v.group(id)
	var made []string
	defer func() {
		if err != nil {
			for i := len(made) - 1; i >= 0; i-- {
				_ = rmdirRetry(made[i], time.Now().Add(time.Second))
			}
		}
	}()
	for _, d := range g.dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, fmt.Errorf("mkdir: %w", err)
		}
		made = append(made, d)
	}
	if lim.MemoryBytes > 0 {
		m := strconv.FormatInt(lim.MemoryBytes, 10)
		if err := writeFile(filepath.Join(g.memDir, "memory.limit_in_bytes"), m); err != nil {
			return nil, err
		}
		if v.hasMemsw {
			if err := writeFile(filepath.Join(g.memDir, "memory.memsw.limit_in_bytes"), m); err != nil {
				return nil, err
			}
		}
	}
	if lim.Pids > 0 {
		if err := writeFile(filepath.Join(v.dir("pids", id), "pids.max"), strconv.FormatInt(lim.Pids, 10)); err != nil {
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

func (g *Group) setCPUv1(millis int64) error {
	// cpu.cfs_period_us is left alone: a new cgroup's period is the
	// kernel's default, 100 ms, which is cfsPeriodUs, and nothing here
	// changes it (one write less per sandbox).
	if err := writeFile(filepath.Join(g.cpuDir, "cpu.cfs_quota_us"), strconv.FormatInt(cfsQuota(millis), 10)); err != nil {
		return err
	}
	shares := max(2, 1024*millis/1000)
	return writeFile(filepath.Join(g.cpuDir, "cpu.shares"), strconv.FormatInt(shares, 10))
}

// cfsQuota converts thousandths of a CPU to a CFS quota per cfsPeriodUs
// (the kernel's minimum quota is 1ms).
func cfsQuota(millis int64) int64 {
	return max(1000, cfsPeriodUs*millis/1000)
}
