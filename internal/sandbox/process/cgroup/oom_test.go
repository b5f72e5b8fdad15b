package cgroup

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestOOMKillCounted: a member that outgrows the memory limit is killed by
// the kernel (no swap to escape to) and Stats counts the OOM kill, on each
// cgroup version this host offers (v2 skips on v1 and hybrid hosts).
func TestOOMKillCounted(t *testing.T) {
	for _, tc := range []struct {
		v    Version
		root string
	}{{V1, "/sys/fs/cgroup"}, {V2, v2Root()}} {
		t.Run(tc.v.String(), func(t *testing.T) {
			m := manager(t, tc.root, tc.v)
			g, err := m.Create("oom-"+strconv.Itoa(os.Getpid()), Limits{MemoryBytes: 32 << 20, Pids: 64})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Destroy(time.Now().Add(5 * time.Second))
			if tc.v == V2 {
				if b, err := os.ReadFile(filepath.Join(g.memDir, "memory.swap.max")); err == nil && string(b) != "0\n" {
					t.Errorf("memory.swap.max = %q, want 0", b)
				}
			} else if b, err := os.ReadFile(filepath.Join(g.memDir, "memory.memsw.limit_in_bytes")); err == nil && string(b) != strconv.Itoa(32<<20)+"\n" {
				t.Errorf("memory.memsw.limit_in_bytes = %q, want the memory limit (no swap)", b)
			}
			// A shell that builds a 64 MiB string once it is in the group.
			cmd := startMemoryHog(t, g, 64<<20)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatal("the memory hog neither finished nor was killed in 30s")
			}
			st, err := g.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.OOMKills == 0 {
				t.Errorf("no OOM kill counted (stats %+v)", st)
			}
			if st.MaxMemoryBytes > 32<<20 {
				t.Errorf("peak %d bytes above the 32 MiB limit", st.MaxMemoryBytes)
			}
		})
	}
}

// v2Root is where this host's unified hierarchy is mounted.
func v2Root() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "/sys/fs/cgroup"
	}
	return "/sys/fs/cgroup/unified"
}
