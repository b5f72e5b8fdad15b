package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestStatFilesLifecycle: Create opens the two stat files, Stats reads the
// same values through them as by path (a Group without them, as
// RemoveStale builds), a read too big for the buffer is redone by path,
// and Destroy closes them even while Stats runs concurrently.
func TestStatFilesLifecycle(t *testing.T) { eachVersion(t, testStatFilesLifecycle) }

func testStatFilesLifecycle(t *testing.T, m *Manager) {
	base := countFDs(t)
	id := "stf-" + strconv.Itoa(os.Getpid())
	g, err := m.Create(id, Limits{MemoryBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Destroy(time.Now().Add(5 * time.Second))
	if n := countFDs(t); n != base+2 {
		t.Errorf("%d descriptors open after Create, want %d", n, base+2)
	}
	// Charge memory so that the peak is not 0: a child that builds a 4 MiB
	// string once it is in the group, then exits. The held descriptor must
	// see it (cgroup files are regenerated on each read from offset 0).
	cmd := startMemoryHog(t, g, 4<<20)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	byFD, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	byPath, err := m.impl.group(id).Stats()
	if err != nil {
		t.Fatal(err)
	}
	want, err := strconv.ParseUint(read(t, filepath.Join(g.memDir, peakFile(g))), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if byFD != byPath || byFD.MaxMemoryBytes != want || want < 4<<20 {
		t.Errorf("Stats through descriptors %+v, by path %+v, file says %d", byFD, byPath, want)
	}
	g.mu.Lock()
	f := g.files
	g.mu.Unlock()
	small := make([]byte, 8) // memory.oom_control and memory.events are longer
	if v, err := readStat(f.eventsFD, f.eventsPath, "oom_kill", small); err != nil || v != byFD.OOMKills {
		t.Errorf("readStat with a short buffer = %d, %v; want %d", v, err, byFD.OOMKills)
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					g.Stats() // may fail once the group is gone
				}
			}
		})
	}
	derr := g.Destroy(time.Now().Add(5 * time.Second))
	close(stop)
	wg.Wait()
	if derr != nil {
		t.Fatal(derr)
	}
	if n := countFDs(t); n != base {
		t.Errorf("%d descriptors open after Destroy, want %d", n, base)
	}
	if _, err := g.Stats(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stats after Destroy: %v, want not exist", err)
	}
}

// TestCreateClosesOnFailure: a Create that fails leaves no descriptor.
func TestCreateClosesOnFailure(t *testing.T) { eachVersion(t, testCreateClosesOnFailure) }

func testCreateClosesOnFailure(t *testing.T, m *Manager) {
	base := countFDs(t)
	id := "stf2-" + strconv.Itoa(os.Getpid())
	g, err := m.Create(id, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Destroy(time.Now().Add(5 * time.Second))
	if _, err := m.Create(id, Limits{}); err == nil {
		t.Fatal("second Create succeeded")
	}
	if err := g.Destroy(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := countFDs(t); n != base {
		t.Errorf("%d descriptors open, want %d", n, base)
	}
}

func TestParseStat(t *testing.T) {
	for in, want := range map[string]uint64{"0\n": 0, "123\n": 123, " 42 ": 42, "max\n": ^uint64(0), "18446744073709551615\n": ^uint64(0)} {
		if got, err := parseStat([]byte(in), "f", ""); err != nil || got != want {
			t.Errorf("parseStat(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "\n", "-1", "+1", "1 2", "18446744073709551616", "0x10", "1_000"} {
		if got, err := parseStat([]byte(in), "f", ""); err == nil {
			t.Errorf("parseStat(%q) = %d, want an error", in, got)
		}
	}
}

// refParseKey is the reference ParseKey (strings and strconv) that the
// allocation-free parser must agree with.
func refParseKey(contents, key string) (uint64, error) {
	for line := range strings.Lines(contents) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || k != key {
			continue
		}
		return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	}
	return 0, nil
}

func FuzzParseKeyMatchesReference(f *testing.F) {
	f.Add("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", "oom_kill")
	f.Add(" oom_kill  18446744073709551616\r\n", "oom_kill")
	f.Add("a 1\na 2", "a")
	f.Fuzz(func(t *testing.T, contents, key string) {
		got, err := ParseKey(contents, key)
		want, werr := refParseKey(contents, key)
		if (err != nil) != (werr != nil) || (err == nil && got != want) {
			t.Fatalf("ParseKey(%q, %q) = %d, %v; reference %d, %v", contents, key, got, err, want, werr)
		}
		if err != nil && got != 0 {
			t.Fatalf("error %v with value %d", err, got)
		}
	})
}

func TestStatsDoesNotAllocate(t *testing.T) { eachVersion(t, testStatsDoesNotAllocate) }

func testStatsDoesNotAllocate(t *testing.T, m *Manager) {
	g, err := m.Create("stf3-"+strconv.Itoa(os.Getpid()), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Destroy(time.Now().Add(5 * time.Second))
	if n := testing.AllocsPerRun(100, func() {
		if _, err := g.Stats(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Stats allocates %.1f times per call", n)
	}
}
