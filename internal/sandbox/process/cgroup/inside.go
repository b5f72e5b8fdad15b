package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

// ErrRunInsideUnsupported is returned by Manager.RunInside where it cannot
// run: on cgroup v2 (which starts processes in a group with
// CLONE_INTO_CGROUP instead, see CanCloneInto), or when the process's own
// v1 cgroups could not be read.
var ErrRunInsideUnsupported = errors.New("cgroup: running a thread inside a group needs cgroup v1 and the process's own cgroups")

// CanRunInside reports whether RunInside works with this Manager: cgroup
// v1, with the process's own cgroup in each hierarchy known.
func (m *Manager) CanRunInside() bool {
	v, ok := m.impl.(*v1)
	if !ok {
		return false
	}
	_, err := v.home()
	return err == nil
}

// RunInside runs f on an OS thread of its own that is, while f runs, a
// member of g in every v1 hierarchy g has (the thread only: the rest of
// the process stays where it is). A process f starts (fork, clone,
// os/exec) is therefore born in g: it never runs outside it, and its start
// needs no migration. A migration of a whole process (a write of its pid
// to cgroup.procs) takes the kernel's cgroup_threadgroup_rwsem for
// writing, under the global cgroup_mutex, and waits for an RCU grace
// period while every fork, exec, thread creation and cgroup change on the
// host waits for it; the calling thread moving itself (a write of "0" to
// "tasks") takes neither the rwsem nor the grace period.
//
// After f the thread moves back to the cgroups the process was in when
// the Manager first ran RunInside; if that fails the thread is ended
// (and with it the parent-death signal of what f started, see
// syscall.SysProcAttr.Pdeathsig) and the error says so. The Go runtime
// starts no thread from a locked one (runtime.LockOSThread), so no other
// thread of the process joins g. g must be fresh in the sense that no CPU
// limit is set yet (the thread's own CPU time counts against g's). It
// returns ErrRunInsideUnsupported unless CanRunInside.
func (m *Manager) RunInside(g *Group, f func() error) error {
	v, ok := m.impl.(*v1)
	if !ok || g.version != V1 {
		return ErrRunInsideUnsupported
	}
	home, err := v.home()
	if err != nil {
		return ErrRunInsideUnsupported
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ferr, back := g.runInside(home, f)
		if back == nil {
			runtime.UnlockOSThread()
		}
		// Otherwise the thread is still in g (or half in it): the
		// goroutine ends locked, and the runtime ends its thread.
		done <- errors.Join(ferr, back)
	}()
	return <-done
}

// runInside moves the calling (locked) thread into g, runs f, and moves it
// back to home; back is the error of moving back (nil when the thread is
// home again, including when it never left).
func (g *Group) runInside(home *homeFiles, f func() error) (err, back error) {
	moved := 0
	defer func() {
		if moved > 0 {
			back = home.enter(moved)
		}
	}()
	for _, d := range g.dirs {
		if err := writeFile(filepath.Join(d, "tasks"), "0"); err != nil {
			return fmt.Errorf("cgroup %s: enter: %w", g.id, err), nil
		}
		moved++
	}
	return f(), nil
}

// homeFiles are the "tasks" files of the process's own cgroups in the
// hierarchies a v1 Group has (v1Required order), open for writing.
type homeFiles struct {
	fds   []int
	paths []string
}

// enter moves the calling thread into the first n home cgroups.
func (h *homeFiles) enter(n int) error {
	for i := range min(n, len(h.fds)) {
		_, err := syscall.Write(h.fds[i], []byte("0"))
		for err == syscall.EINTR {
			_, err = syscall.Write(h.fds[i], []byte("0"))
		}
		if err != nil {
			return fmt.Errorf("cgroup: move a thread back to %s: %w", h.paths[i], err)
		}
	}
	return nil
}

// homes caches the home files per cgroup root: they are the process's,
// opened once and kept for its life.
var homes = struct {
	sync.Mutex
	m map[string]*homeFiles
}{m: map[string]*homeFiles{}}

// home returns the home files of the process under v's root, opening them
// the first time.
func (v *v1) home() (*homeFiles, error) {
	homes.Lock()
	defer homes.Unlock()
	if h, ok := homes.m[v.root]; ok {
		return h, nil
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	paths, err := homePaths(b)
	if err != nil {
		return nil, err
	}
	h := &homeFiles{}
	for _, c := range v1Required {
		p := filepath.Join(v.root, c, paths[c], "tasks")
		fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			for _, fd := range h.fds {
				syscall.Close(fd)
			}
			return nil, &os.PathError{Op: "open", Path: p, Err: err}
		}
		h.fds, h.paths = append(h.fds, fd), append(h.paths, p)
	}
	homes.m[v.root] = h
	return h, nil
}

// homePaths parses /proc/self/cgroup ("id:controller,controller:/path"
// lines) into the path of each controller in v1Required.
func homePaths(b []byte) (map[string]string, error) {
	paths := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") || strings.Contains(parts[2], "/..") {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	for _, c := range v1Required {
		if _, ok := paths[c]; !ok {
			return nil, fmt.Errorf("cgroup: no v1 %s hierarchy in /proc/self/cgroup", c)
		}
	}
	return paths, nil
}
