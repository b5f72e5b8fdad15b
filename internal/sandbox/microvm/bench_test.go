package microvm_test

import (
	"context"
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

// BenchmarkColdStart: Create until the runtime's first /next reaches
// the host (a full boot), one VM at a time; reports p50/p99 and the idle
// VM's QEMU RSS. Run with -benchtime=12x or more for a p99 worth the name.
func BenchmarkColdStart(b *testing.B) {
	for _, mib := range []int{-1, 32} {
		b.Run(fmt.Sprintf("tb-size=%d", mib), func(b *testing.B) { benchColdStart(b, mib) })
	}
}

// benchColdStart measures cold starts with a TCG translation cache of
// tbMiB (-1: QEMU's default): the peer in the same run.
func benchColdStart(b *testing.B, tbMiB int) {
	d := newDriverWith(b, func(c *microvm.Config) { c.TCGCacheMiB = tbMiB })
	code := loopCode(b)
	var times []time.Duration
	var rss []float64
	for i := 0; b.Loop(); i++ {
		api := newLoopAPI()
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		sb, err := d.Create(ctx, sandbox.Spec{
			ID: fmt.Sprintf("cold-%d", i), CodeDir: code, Command: []string{"/var/task/bootstrap"},
			RuntimeAPI: api, Output: io.Discard, MemoryMB: 128,
		})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		select {
		case <-api.first:
		case <-sb.Done():
			b.Fatalf("sandbox ended: %v", sb.Err())
		}
		times = append(times, time.Since(t0))
		time.Sleep(time.Second) // idle
		rss = append(rss, rssMiB(sb.(*microvm.Sandbox).Pid()))
		sb.Destroy(context.Background())
	}
	slices.Sort(rss)
	b.ReportMetric(float64(percentile(times, 0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(percentile(times, 0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(rss[len(rss)/2], "idle-rss-MiB")
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
