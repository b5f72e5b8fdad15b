package microvm_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/runtimes"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/microvm"
)

// loopAPI is a Runtime API for the loop runtime: each invocation sent on
// invoke is answered on responses; first is closed on the first /next.
type loopAPI struct {
	invoke    chan string
	responses chan string
	first     chan struct{}
	once      sync.Once
}

func newLoopAPI() *loopAPI {
	return &loopAPI{invoke: make(chan string), responses: make(chan string, 1), first: make(chan struct{})}
}

func (a *loopAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/next"):
		a.once.Do(func() { close(a.first) })
		select {
		case p := <-a.invoke:
			w.Header().Set("Lambda-Runtime-Aws-Request-Id", "req-"+p)
			io.WriteString(w, p)
		case <-r.Context().Done():
		}
	case strings.HasSuffix(r.URL.Path, "/response"):
		b, _ := io.ReadAll(r.Body)
		a.responses <- string(b)
		w.WriteHeader(http.StatusAccepted)
	default:
		http.NotFound(w, r)
	}
}

func loopCode(b *testing.B) string {
	dir := b.TempDir()
	gobuildtest.Build(b, "./testdata/loop", filepath.Join(dir, "bootstrap"))
	return dir
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// rssMiB is a process's resident memory.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

// pssMiB is a process's proportional set size (its private memory plus
// its share of pages it shares), from smaps_rollup.
func pssMiB(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkColdStart: Create until the runtime's first /next reaches the
// host, one VM at a time, by a full boot (snapshots off) and by a snapshot
// restore (the peer in the same run; one boot before the timed loop saves
// the snapshot); reports p50/p99 and the idle VM's QEMU RSS and PSS. Run
// with -benchtime=12x or more for a p99 worth the name.
//
// restore+32MiB-code is the restore with a 32 MiB file in the function's
// code: what sending the code over the channel costs.
func BenchmarkColdStart(b *testing.B) {
	for _, mode := range []string{"boot", "restore", "restore+32MiB-code"} {
		b.Run(mode, func(b *testing.B) { benchColdStart(b, mode == "boot", strings.HasSuffix(mode, "code")) })
	}
}

func benchColdStart(b *testing.B, boot, bigCode bool) {
	d := newDriverWith(b, func(c *microvm.Config) {
		c.NoSnapshots = boot
		c.ImageDir = filepath.Join(filepath.Dir(c.StateDir), "image") // no snapshot from another benchmark
	})
	code := loopCode(b)
	if bigCode {
		blob := make([]byte, 32<<20)
		rand.Read(blob)
		if err := os.WriteFile(filepath.Join(code, "blob"), blob, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	create := func(id string) (sandbox.Sandbox, *loopAPI, time.Duration) {
		api := newLoopAPI()
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sb, err := d.Create(ctx, sandbox.Spec{
			ID: id, CodeDir: code, Command: []string{"/var/task/bootstrap"},
			RuntimeAPI: api, Output: io.Discard, MemoryMB: 128,
		})
		if err != nil {
			b.Fatal(err)
		}
		select {
		case <-api.first:
		case <-sb.Done():
			b.Fatalf("sandbox ended: %v", sb.Err())
		}
		return sb, api, time.Since(t0)
	}
	if !boot {
		sb, _, took := create("cold-snapshot")
		b.Logf("first cold start (full boot + snapshot save): %v", took)
		sb.Destroy(context.Background())
	}
	var times []time.Duration
	var rss, pss []float64
	for i := 0; b.Loop(); i++ {
		sb, _, took := create(fmt.Sprintf("cold-%d", i))
		if restored := sb.(*microvm.Sandbox).Restored(); restored == boot {
			b.Fatalf("restored = %v with NoSnapshots %v", restored, boot)
		}
		times = append(times, took)
		time.Sleep(time.Second) // idle
		pid := sb.(*microvm.Sandbox).Pid()
		rss = append(rss, rssMiB(pid))
		pss = append(pss, pssMiB(pid))
		sb.Destroy(context.Background())
	}
	slices.Sort(rss)
	slices.Sort(pss)
	b.ReportMetric(float64(percentile(times, 0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(percentile(times, 0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(rss[len(rss)/2], "idle-rss-MiB")
	b.ReportMetric(pss[len(pss)/2], "idle-pss-MiB")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkWarmInvoke: one invocation through a running VM's Runtime API
// (host → /next answer → guest → /response → host), over the channel.
func BenchmarkWarmInvoke(b *testing.B) {
	d := newDriver(b)
	code := loopCode(b)
	api := newLoopAPI()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	sb, err := d.Create(ctx, sandbox.Spec{
		ID: "warm", CodeDir: code, Command: []string{"/var/task/bootstrap"},
		RuntimeAPI: api, Output: io.Discard, MemoryMB: 128,
	})
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Destroy(context.Background())
	<-api.first
	var times []time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		api.invoke <- strconv.Itoa(i)
		if got := <-api.responses; got != strconv.Itoa(i) {
			b.Fatalf("response %q to invocation %d", got, i)
		}
		times = append(times, time.Since(t0))
	}
	b.ReportMetric(float64(percentile(times, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(times, 0.99).Microseconds()), "p99-µs")
}

// BenchmarkColdStartRuntime: Create until the runtime's first /next, for
// Flint's Python and Node runtimes (internal/runtimes) running the e2e
// test handlers, restored from a snapshot: the interpreter's start on top
// of the restore. Each iteration cold-starts twice, alternating: with the
// default warm-ups (a snapshot per interpreter, its files in the page
// cache) and without (the plain snapshot of the VM size), so that both
// see the same load; one boot of each before the timed loop saves the
// snapshots.
func BenchmarkColdStartRuntime(b *testing.B) {
	var cfg microvm.Config
	warm := newDriverWith(b, func(c *microvm.Config) {
		c.ImageDir = filepath.Join(filepath.Dir(c.StateDir), "image")
		cfg = *c
	})
	// The second driver shares the first's test lock (vmtest.Lock is
	// taken once per test) and MaxVMs 1: the loop alternates, one VM at a
	// time. Its own image directory: New prunes other digests' snapshots.
	plainCfg := cfg
	plainCfg.Warmups = map[string][]string{}
	plainCfg.ImageDir = cfg.ImageDir + "-plain"
	plain, err := microvm.New(plainCfg)
	if err != nil {
		b.Fatal(err)
	}
	imageDirs := []string{cfg.ImageDir, plainCfg.ImageDir}
	cat, err := runtimes.New(runtimes.Config{AssetDir: filepath.Join(b.TempDir(), "runtimes")})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ family, handler, code string }{
		{"python3.", "handler.handler", "../../../e2e/testdata/python"},
		{"nodejs", "index.handler", "../../../e2e/testdata/node"},
	} {
		var rt runtimes.Runtime
		for _, n := range cat.Names() {
			if strings.HasPrefix(n, tc.family) {
				rt, _ = cat.Lookup(n)
			}
		}
		if rt.Name == "" {
			b.Logf("no %s* runtime on this host", tc.family)
			continue
		}
		code, err := filepath.Abs(tc.code)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(rt.Name, func(b *testing.B) {
			create := func(d *microvm.Driver, id string) time.Duration {
				api := newLoopAPI()
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				sb, err := d.Create(ctx, sandbox.Spec{
					ID: id, CodeDir: code, RuntimeDir: rt.RuntimeDir, Command: rt.Command(),
					Env:        append(rt.Env, "_HANDLER="+tc.handler, "PATH=/usr/bin:/bin", "LAMBDA_TASK_ROOT=/var/task"),
					RuntimeAPI: api, Output: io.Discard, MemoryMB: 256,
				})
				if err != nil {
					b.Fatal(err)
				}
				defer sb.Destroy(context.Background())
				select {
				case <-api.first:
				case <-sb.Done():
					b.Fatalf("sandbox ended: %v", sb.Err())
				}
				return time.Since(t0)
			}
			b.Logf("first cold starts (boot, warm-up, save): %v; (boot, save) %v", create(warm, "w-first"), create(plain, "p-first"))
			var tw, tp []time.Duration
			for i := 0; b.Loop(); i++ {
				tw = append(tw, create(warm, fmt.Sprintf("w-%d", i)))
				tp = append(tp, create(plain, fmt.Sprintf("p-%d", i)))
			}
			for _, dir := range imageDirs {
				snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*.state"))
				for _, f := range snaps {
					if fi, err := os.Stat(f); err == nil {
						b.Logf("snapshot %s: %d MiB", filepath.Base(f)[25:], fi.Size()>>20)
					}
				}
			}
			b.ReportMetric(float64(percentile(tw, 0.5).Milliseconds()), "warm-p50-ms")
			b.ReportMetric(float64(percentile(tw, 0.99).Milliseconds()), "warm-p99-ms")
			b.ReportMetric(float64(percentile(tp, 0.5).Milliseconds()), "plain-p50-ms")
			b.ReportMetric(float64(percentile(tp, 0.99).Milliseconds()), "plain-p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
