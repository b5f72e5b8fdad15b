package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// ErrRenameUnsupported is returned by Rename on cgroup v2, whose kernel
// interface cannot rename a cgroup.
var ErrRenameUnsupported = errors.New("cgroup: renaming needs cgroup v1")

// Rename gives group g (made by this Manager) a new id, in place, with its
// members, limits and charges: the process driver prepares sandboxes
// under a pool id and names them after the sandbox that claims them. It
// must not run concurrently with any other method of g but Stats, Peak and
// OOMKills (they read through descriptors, which follow the directory, or
// under g's lock). On cgroup v2 it
// returns ErrRenameUnsupported and changes nothing; on v1 an error may
// leave some controllers renamed (Destroy of g still removes them all:
// the Group then knows both names).
func (m *Manager) Rename(g *Group, id string) error {
	if !validName(id) {
		return fmt.Errorf("cgroup: invalid id %q", id)
	}
	if g.version == V2 {
		return ErrRenameUnsupported
	}
	ng := m.impl.group(id)
	for i, d := range g.dirs {
		if err := os.Rename(d, ng.dirs[i]); err != nil {
			// Keep Destroy able to find what was renamed already.
			g.dirs = append(g.dirs, ng.dirs[:i]...)
			return fmt.Errorf("cgroup %s: rename to %s: %w", g.id, id, err)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.id, g.dirs, g.memDir, g.cpuDir = id, ng.dirs, ng.memDir, ng.cpuDir
	if f := g.files; f != nil {
		// The descriptors follow the directory; the paths (read when a
		// descriptor fails) must too.
		f.peakPath = filepath.Join(g.memDir, filepath.Base(f.peakPath))
		f.eventsPath = filepath.Join(g.memDir, filepath.Base(f.eventsPath))
	}
	return nil
}

// SetMemory changes the memory limit of a live group (raising or lowering
// it; lowering below the current use fails with the kernel's EBUSY).
// Swap stays off as Create set it.
func (g *Group) SetMemory(bytes int64) error {
	if bytes <= 0 {
		return fmt.Errorf("cgroup %s: memory limit must be positive, not %d", g.id, bytes)
	}
	m := strconv.FormatInt(bytes, 10)
	var err error
	if g.version == V2 {
		err = writeFile(filepath.Join(g.memDir, "memory.max"), m)
	} else {
		// memory.limit_in_bytes may never exceed memsw.limit_in_bytes:
		// raise memsw first when raising, last when lowering.
		limit := filepath.Join(g.memDir, "memory.limit_in_bytes")
		memsw := filepath.Join(g.memDir, "memory.memsw.limit_in_bytes")
		if !g.memsw {
			err = writeFile(limit, m)
		} else if err = writeFile(memsw, m); err == nil {
			err = writeFile(limit, m)
		} else if err = writeFile(limit, m); err == nil {
			err = writeFile(memsw, m)
		}
	}
	if err != nil {
		return fmt.Errorf("cgroup %s: set memory limit: %w", g.id, err)
	}
	return nil
}
