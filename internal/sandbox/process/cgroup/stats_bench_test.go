package cgroup

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// BenchmarkStats reads the stats of a real (empty) v1 sandbox cgroup, as
// the worker does once per invocation for REPORT's Max Memory Used.
func BenchmarkStats(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("cgroup benchmarks need root")
	}
	m, err := New(Config{Root: "/sys/fs/cgroup", Parent: testParent, Version: V1})
	if err != nil {
		b.Skipf("cgroup v1 unusable on this host: %v", err)
	}
	g, err := m.Create("bench-"+strconv.Itoa(os.Getpid()), Limits{MemoryBytes: 64 << 20, Pids: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Destroy(time.Now().Add(5 * time.Second))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Stats(); err != nil {
			b.Fatal(err)
		}
	}
}
