package process

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/outputtest"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process/cgroup"
)

// TestInitStartsInItsCgroup reads which cgroups the init is in right after
// the start step, before anything could move it: on cgroup v2 with
// CLONE_INTO_CGROUP ("clone-into") its own, and no cgroup-add step runs;
// without ("migrate": cgroup v1, or the fallback forced on v2) still the
// host's until cgroup-add. Either way the runtime's cgroup namespace is
// rooted at its cgroup: it sees itself at "/".
func TestInitStartsInItsCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("process sandbox tests need root (namespaces, cgroups, mounts)")
	}
	// The external tests' parent, removed by TestMain.
	parent := "flint-test-" + strconv.Itoa(os.Getpid())
	d, err := New(Config{StateDir: t.TempDir(), CgroupParent: parent})
	if err != nil {
		t.Skipf("process sandbox driver unavailable on this host: %v", err)
	}
	v := d.CgroupVersion()
	if v == cgroup.V2 && !d.cloneIntoCgroup {
		t.Errorf("cgroup v2 on kernel %s: no CLONE_INTO_CGROUP (Linux 5.7 has it)", kernelRelease())
	}
	modes := map[string]bool{"migrate": false}
	if d.cloneIntoCgroup {
		modes["clone-into"] = true
	}
	for name, into := range modes {
		t.Run(name, func(t *testing.T) {
			dd := *d
			dd.cloneIntoCgroup = into
			id := "cgstart-" + name + "-" + strconv.Itoa(os.Getpid())
			c := dd.newCreation(id, cgroup.Limits{MemoryBytes: 256 << 20, Pids: 1024})
			steps := c.prepareSteps()
			var names []string
			for _, st := range steps {
				names = append(names, st.name)
			}
			if got := slices.Contains(names, "cgroup-add"); got == into {
				t.Errorf("prepare steps %v: cgroup-add present = %v", names, got)
			}
			i := slices.Index(names, "start") + 1
			if err := c.run(context.Background(), steps[:i]); err != nil {
				t.Fatal(err)
			}
			pid := c.s.cmd.Process.Pid
			want := "/" + parent + "/" + id
			inGroup := func() bool {
				paths := cgroupPaths(t, pid, v)
				for _, p := range paths {
					if p != want {
						return false
					}
				}
				return len(paths) > 0
			}
			if got := inGroup(); got != into {
				c.abort()
				t.Fatalf("right after start, init in its cgroup %s = %v, want %v (/proc/%d/cgroup: %v)", want, got, into, pid, cgroupPaths(t, pid, v))
			}
			if err := c.run(context.Background(), steps[i:]); err != nil {
				t.Fatal(err)
			}
			if !inGroup() {
				c.abort()
				t.Fatalf("prepared init not in %s: %v", want, cgroupPaths(t, pid, v))
			}
			c.abort()

			// The whole Create: the runtime's cgroup namespace.
			var out outputtest.Buffer
			code := t.TempDir()
			os.Chmod(code, 0o755)
			sb, err := dd.create(context.Background(), &sandbox.Spec{
				ID: id, CodeDir: code, Command: []string{"/bin/cat", "/proc/self/cgroup"},
				Env: []string{"PATH=/usr/bin:/bin"}, RuntimeAPI: http.NotFoundHandler(),
				Output: &out, MemoryMB: 256, EphemeralStorageMB: 32,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Destroy(context.Background())
			select {
			case <-sb.Done():
			case <-time.After(30 * time.Second):
				t.Fatal("cat did not end")
			}
			var lines []string
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if lines = strings.Fields(out.String()); len(lines) > 0 && (v == cgroup.V1 || strings.HasPrefix(lines[0], "0::")) {
					break
				}
			}
			if len(lines) == 0 {
				t.Fatal("the runtime printed nothing")
			}
			t.Logf("runtime sees %q", lines)
			for _, l := range lines {
				if v == cgroup.V2 && !strings.HasPrefix(l, "0::") {
					continue
				}
				if !strings.HasSuffix(l, ":/") {
					t.Errorf("the runtime's /proc/self/cgroup: %q, want every path \"/\" (its cgroup namespace rooted at its cgroup)", lines)
					break
				}
			}
		})
	}
}

// cgroupPaths lists pid's cgroup paths in the memory, pids and cpu
// hierarchies (v1) or the unified one (v2).
func cgroupPaths(t *testing.T, pid int, v cgroup.Version) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		if v == cgroup.V2 && f[0] == "0" ||
			v == cgroup.V1 && slices.ContainsFunc(strings.Split(f[1], ","), func(c string) bool { return c == "memory" || c == "pids" || c == "cpu" }) {
			paths = append(paths, f[2])
		}
	}
	return paths
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// BenchmarkPrepareCgroupStart compares, in one run, the init's start into
// its cgroup by migration ("migrate": cgroup-add after start) and, on
// cgroup v2 with CLONE_INTO_CGROUP, by clone3 ("clone-into"). It times
// Prepare (the pool's refill: start and cgroup-add are in it) and, as the
// host's other work sees it, the fork+exec+wait of /bin/true run in a loop
// meanwhile (a migration holds every fork and exec on the host).
func BenchmarkPrepareCgroupStart(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	d, err := New(Config{StateDir: b.TempDir(), CgroupParent: "flint-test-" + strconv.Itoa(os.Getpid())})
	if err != nil {
		b.Skipf("process sandbox driver unavailable on this host: %v", err)
	}
	modes := []string{"migrate"}
	if d.cloneIntoCgroup {
		modes = append(modes, "clone-into")
	}
	for _, mode := range modes {
		b.Run(mode, func(b *testing.B) {
			dd := *d
			dd.cloneIntoCgroup = mode == "clone-into"
			stop := make(chan struct{})
			spawns := make(chan []time.Duration)
			go func() {
				var lat []time.Duration
				for {
					select {
					case <-stop:
						spawns <- lat
						return
					default:
					}
					t0 := time.Now()
					if err := exec.Command("/bin/true").Run(); err != nil {
						b.Error(err)
					}
					lat = append(lat, time.Since(t0))
				}
			}()
			var lat []time.Duration
			var startAdd time.Duration
			lim := cgroup.Limits{MemoryBytes: PrepareMemoryMB << 20, Pids: int64(dd.cfg.PidsMax)}
			for i := 0; b.Loop(); i++ {
				// What Prepare runs, keeping the step timings.
				c := dd.newCreation("bench-"+mode+"-"+strconv.Itoa(i), lim)
				t0 := time.Now()
				if err := c.run(context.Background(), c.prepareSteps()); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				b.StopTimer()
				for _, st := range c.steps {
					if st.Name == "start" || st.Name == "cgroup-add" {
						startAdd += st.Duration
					}
				}
				c.abort()
				b.StartTimer()
			}
			close(stop)
			sp := <-spawns
			pct := func(l []time.Duration, p int) float64 {
				if len(l) == 0 {
					return 0
				}
				sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
				return float64(l[len(l)*p/100].Microseconds())
			}
			b.ReportMetric(pct(lat, 50), "prepare-p50-µs")
			b.ReportMetric(pct(lat, 90), "prepare-p90-µs")
			b.ReportMetric(float64((startAdd / time.Duration(len(lat))).Microseconds()), "start+cgroup-add-µs")
			b.ReportMetric(pct(sp, 50), "spawn-p50-µs")
			b.ReportMetric(pct(sp, 99), "spawn-p99-µs")
		})
	}
}
