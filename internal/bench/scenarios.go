package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

var noop = []byte(`{}`)

// warmTarget gives the invoker to use for c concurrent clients (the peer
// may need a differently started emulator per level) and a cleanup.
type warmTarget func(ctx context.Context, clients int) (*invoker, func(), error)

// runWarm measures warm invocations: seq sequential ones, then closed-loop
// clients at 1, 4 and 16 for d each. Every level first warms its
// sandboxes up.
func runWarm(ctx context.Context, cfg *Config, target warmTarget) (*Warm, error) {
	w := &Warm{Duration: cfg.Duration.Seconds()}
	inv, cleanup, err := target(ctx, 1)
	if err != nil {
		return nil, err
	}
	call := func(inv *invoker) func(ctx context.Context) error {
		return func(ctx context.Context) error { _, err := inv.invoke(ctx, noop); return err }
	}
	// Warm up (the first call is the cold start).
	if r := closedLoop(ctx, 1, 0, max(cfg.SeqN/10, 5), call(inv)); r.errs > 0 {
		cleanup()
		return nil, fmt.Errorf("warm-up: %d errors, last: %w", r.errs, r.lastErr)
	}
	seq := closedLoop(ctx, 1, 0, cfg.SeqN, call(inv))
	w.SeqN, w.Errors = len(seq.lat), seq.errs
	w.SeqP50, w.SeqP90, w.SeqP99 = percentile(seq.lat, 50), percentile(seq.lat, 90), percentile(seq.lat, 99)
	cleanup()
	for _, c := range []int{1, 4, 16} {
		inv, cleanup, err := target(ctx, c)
		if err != nil {
			return nil, err
		}
		closedLoop(ctx, c, 0, c*20, call(inv)) // create and warm c sandboxes
		r := closedLoop(ctx, c, cfg.Duration, 0, call(inv))
		cleanup()
		w.Errors += r.errs
		if r.errs > 0 {
			w.LastError = fmt.Sprintf("c%d: %v", c, r.lastErr)
		}
		rps, p50, p99 := round2(r.rps()), percentile(r.lat, 50), percentile(r.lat, 99)
		switch c {
		case 1:
			w.C1RPS, w.C1P50, w.C1P99 = rps, p50, p99
		case 4:
			w.C4RPS, w.C4P50, w.C4P99 = rps, p50, p99
		case 16:
			w.C16RPS, w.C16P50, w.C16P99 = rps, p50, p99
		}
		if len(r.lat) == 0 {
			return w, fmt.Errorf("warm c%d: no invocation succeeded: %w", c, r.lastErr)
		}
	}
	return w, nil
}

var (
	initDurRE = regexp.MustCompile(`Init Duration: ([0-9.]+) ms`)
	durRE     = regexp.MustCompile(`\tDuration: ([0-9.]+) ms`)
)

func reportMs(re *regexp.Regexp, log string) (time.Duration, bool) {
	m := re.FindStringSubmatch(log)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(v * float64(time.Millisecond)), true
}

// runFlintCold measures cold starts: each run changes the function's
// configuration (which retires its sandboxes) and times one Invoke. The
// breakdown comes from the REPORT line (Init Duration, Duration) and, in
// process, from the worker manager's and the driver's debug records.
func runFlintCold(ctx context.Context, cfg *Config, t *flintTarget) (*Cold, error) {
	name := cfg.fnName("cold")
	if err := t.createFunction(ctx, name, cfg.MemoryMB); err != nil {
		return nil, err
	}
	defer t.deleteFunction(context.WithoutCancel(ctx), name) // frees its sandboxes for what follows
	inv := &invoker{url: invokeURL(t.base, name), hc: t.httpClient(1)}
	c := &Cold{Mode: "UpdateFunctionConfiguration before each Invoke (code stays cached on the worker)"}
	var totals []time.Duration
	parts := map[string][]time.Duration{}
	if t.capture != nil {
		t.capture.setCapturing(true)
		defer t.capture.setCapturing(false)
		c.Steps = []string{"placement+code", "sandbox create", "runtime init", "first invoke", "api+other"}
	} else {
		c.Steps = []string{"sandbox create+runtime init", "first invoke", "api+other"}
	}
	driverSteps := map[string][]time.Duration{}
	var driverOrder []string
	for i := 0; i < cfg.ColdN; i++ {
		if err := t.touchConfig(ctx, name, i); err != nil {
			return nil, err
		}
		if t.capture != nil {
			t.capture.take()
		}
		t0 := time.Now()
		resp, err := inv.invoke(ctx, noop, "X-Amz-Log-Type", "Tail")
		total := time.Since(t0)
		if err != nil {
			c.Errors++
			if c.Errors > cfg.ColdN/2+1 {
				return nil, fmt.Errorf("cold: %w", err)
			}
			continue
		}
		initD, ok := reportMs(initDurRE, resp.logResult)
		if !ok {
			c.Errors++ // not a cold start after all
			continue
		}
		dur, _ := reportMs(durRE, resp.logResult)
		totals = append(totals, total)
		rest := total - initD - dur
		parts["first invoke"] = append(parts["first invoke"], dur)
		if t.capture != nil {
			cs := t.capture.take()
			if len(cs) == 1 {
				var sum time.Duration
				for _, s := range cs[0].steps {
					if !strings.Contains(s.name, "/") { // init/* steps run inside wait-init and exec
						sum += s.d
					}
					if _, ok := driverSteps[s.name]; !ok {
						driverOrder = append(driverOrder, s.name)
					}
					driverSteps[s.name] = append(driverSteps[s.name], s.d)
				}
				// The worker's Init Duration runs from just before the
				// driver's Create to the runtime's first /next.
				parts["sandbox create"] = append(parts["sandbox create"], sum)
				parts["runtime init"] = append(parts["runtime init"], initD-sum)
				parts["placement+code"] = append(parts["placement+code"], cs[0].took-sum)
				rest -= cs[0].took - sum
			}
		} else {
			parts["sandbox create+runtime init"] = append(parts["sandbox create+runtime init"], initD)
		}
		parts["api+other"] = append(parts["api+other"], rest)
	}
	if len(totals) == 0 {
		return nil, fmt.Errorf("cold: no cold start measured (%d errors)", c.Errors)
	}
	c.N = len(totals)
	c.P50, c.P90, c.P99 = percentile(totals, 50), percentile(totals, 90), percentile(totals, 99)
	c.Breakdown = map[string]float64{}
	for k, v := range parts {
		c.Breakdown[k] = round3(percentile(v, 50))
	}
	for _, s := range driverOrder {
		k := "  driver " + s
		c.Breakdown[k] = round3(percentile(driverSteps[s], 50))
		c.Steps = append(c.Steps, k)
	}
	return c, nil
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// runDensity creates N sandboxes at once (N concurrent slow invokes of a
// fresh function), then, once they are idle, measures the host's memory
// they hold beyond the function's own private memory.
func runDensity(ctx context.Context, cfg *Config, t *flintTarget) (*Density, error) {
	name := cfg.fnName("density")
	if err := t.createFunction(ctx, name, smallMB); err != nil {
		return nil, err
	}
	n := cfg.DensityN
	inv := &invoker{url: invokeURL(t.base, name), hc: t.httpClient(n)}
	d := &Density{N: n}
	settle := func() {
		runtime.GC()
		time.Sleep(300 * time.Millisecond) // let freed pages reach the host
	}
	if t.capture != nil {
		t.capture.take()
		t.capture.setCapturing(true) // to learn the sandboxes' ids
	}
	settle()
	availBefore := memAvailableMedian()
	rssBefore := selfRSSKB()
	// Every invoke sleeps long enough that none finishes before all N
	// sandboxes exist (checked below: each reply must be its sandbox's
	// first invocation).
	sleep := 2000 + 20*n
	payload := []byte(fmt.Sprintf(`{"sleepMs":%d,"mem":true}`, sleep))
	replies := make([]fnReply, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lastErr error
	t0 := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := inv.invoke(ctx, payload)
			if err == nil {
				replies[i], err = parseReply(resp.body)
			}
			if err != nil {
				mu.Lock()
				d.Errors++
				lastErr = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if d.Errors == n {
		return nil, fmt.Errorf("density: every invoke failed: %w", lastErr)
	}
	var lastStart int64
	var anon, rss []time.Duration // kB, as durations to reuse percentile
	for _, r := range replies {
		if r.StartNs == 0 {
			continue
		}
		if r.Count == 1 {
			d.Sandboxes++
		}
		lastStart = max(lastStart, r.StartNs)
		anon = append(anon, time.Duration(r.RssAnonKB)*time.Millisecond)
		rss = append(rss, time.Duration(r.RssKB)*time.Millisecond)
	}
	if el := time.Duration(lastStart - t0.UnixNano()); el > 0 {
		d.CreatesPerS = round2(float64(d.Sandboxes) / el.Seconds())
	}
	settle()
	availAfter := memAvailableMedian()
	rssAfter := selfRSSKB()
	var charged []time.Duration // kB per sandbox cgroup
	if t.capture != nil {
		for _, c := range t.capture.take() {
			if kb, ok := cgroupMemoryKB(c.id); ok {
				charged = append(charged, time.Duration(kb)*time.Millisecond)
			}
		}
		t.capture.setCapturing(false)
	}
	// Free the memory; the host's gain is a second estimate of the delta.
	if err := t.deleteFunction(ctx, name); err != nil {
		return d, err
	}
	settle()
	availFreed := memAvailableMedian()

	sbs := float64(max(d.Sandboxes, 1))
	perKB := (float64(availBefore-availAfter) + float64(availFreed-availAfter)) / 2 / sbs
	d.HostDeltaMiB = round3(perKB / 1024)
	d.FunctionAnonMiB = round3(percentile(anon, 50) / 1024)
	d.FunctionRSSMiB = round3(percentile(rss, 50) / 1024)
	d.HostOverheadMiB = round3(d.HostDeltaMiB - d.FunctionAnonMiB)
	d.IdleOverheadMiB = d.HostOverheadMiB
	d.Method = "host: MemAvailable delta (mean of create and free) / sandboxes - function RssAnon"
	if t.inProcess {
		d.ServerRSSDeltaMiB = round3(float64(rssAfter-rssBefore) / sbs / 1024)
	}
	if len(charged) > 0 {
		// Far less noisy on a shared host: what the kernel charged to
		// each sandbox's memory cgroup (its processes, page tables,
		// kernel objects) beyond the function's private memory, plus
		// the server's own growth per sandbox. A lower bound: kernel
		// memory outside the cgroup is not in it.
		d.CgroupChargedMiB = round3(percentile(charged, 50) / 1024)
		d.AccountedOverheadMiB = round3(d.CgroupChargedMiB - d.FunctionAnonMiB + max(d.ServerRSSDeltaMiB, 0))
		// Other processes' memory swings swamp the host-wide delta on
		// a shared machine; the accounted figure is what the fixed
		// field reports when it exists.
		d.IdleOverheadMiB = d.AccountedOverheadMiB
		d.Method = "accounted: sandbox memory cgroup charge - function RssAnon + server RSS growth per sandbox (host figure alongside)"
	}
	if perKB > 0 {
		d.FitByMemory = int64(float64(availAfter)/perKB) + int64(d.Sandboxes)
	}
	return d, nil
}

// cgroupMemoryKB reads what the process driver's memory cgroup of sandbox
// id is charged (cgroup v1 or v2, default mount; the server's cgroup
// parent is "flint-<data dir digest>").
func cgroupMemoryKB(id string) (int64, bool) {
	var files []string
	for _, pat := range []string{
		"/sys/fs/cgroup/memory/flint*/" + id + "/memory.usage_in_bytes",
		"/sys/fs/cgroup/flint*/" + id + "/memory.current",
		"/sys/fs/cgroup/unified/flint*/" + id + "/memory.current",
	} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err == nil && v > 0 {
			return v / 1024, true
		}
	}
	return 0, false
}

// memAvailableMedian samples MemAvailable (kB) a few times and returns the
// median, to damp other processes' noise.
func memAvailableMedian() int64 {
	var vs []int64
	for range 5 {
		if v, err := meminfoKB("MemAvailable:"); err == nil {
			vs = append(vs, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(vs) == 0 {
		return 0
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
	return vs[len(vs)/2]
}

func selfRSSKB() int64 {
	b, err := readStatusField("/proc/self/status", "VmRSS:")
	if err != nil {
		return 0
	}
	return b
}

// runAsync measures asynchronous invocations: first the latency from the
// 202 to the handler starting (one event at a time, the queue otherwise
// empty), then how many events per second the API accepts from 16
// clients.
func runAsync(ctx context.Context, cfg *Config, t *flintTarget) (*Async, error) {
	name := cfg.fnName("async")
	if err := t.createFunction(ctx, name, cfg.MemoryMB); err != nil {
		return nil, err
	}
	// Kept until the end: the accept phase leaves a backlog that runs on.
	hc := t.httpClient(16)
	inv := &invoker{url: invokeURL(t.base, name), hc: hc}
	a := &Async{Concurrency: 16, AcceptWindow: cfg.AsyncDuration.Seconds()}
	if _, err := inv.invoke(ctx, noop); err != nil { // a warm sandbox
		return nil, err
	}
	var starts, queued []time.Duration
	var lastErr error
	for range cfg.AsyncStartN {
		resp, err := inv.invoke(ctx, noop, "X-Amz-Invocation-Type", "Event")
		accepted := time.Now()
		if err == nil && resp.status != http.StatusAccepted {
			err = fmt.Errorf("event invoke: status %d", resp.status)
		}
		var st *asyncStatus
		if err == nil {
			st, err = waitStatus(ctx, hc, t.base, resp.requestID)
		}
		var r fnReply
		if err == nil {
			r, err = parseReply(st.Response)
		}
		if err != nil {
			a.Errors++
			lastErr = err
			continue
		}
		starts = append(starts, time.Duration(r.StartNs-accepted.UnixNano()))
		if st.StartedAt != nil {
			queued = append(queued, st.StartedAt.Sub(st.EnqueuedAt))
		}
	}
	a.StartN = len(starts)
	var startErr error
	if a.StartN == 0 {
		startErr = fmt.Errorf("async: no event's start measured: %w", lastErr)
	}
	a.StartP50, a.StartP99 = percentile(starts, 50), percentile(starts, 99)
	a.QueuedP50 = percentile(queued, 50)

	ev := func(ctx context.Context) error {
		resp, err := inv.invoke(ctx, noop, "X-Amz-Invocation-Type", "Event")
		if err == nil && resp.status != http.StatusAccepted {
			err = fmt.Errorf("event invoke: status %d", resp.status)
		}
		return err
	}
	r := closedLoop(ctx, a.Concurrency, cfg.AsyncDuration, 0, ev)
	a.Errors += r.errs
	a.AcceptN = len(r.lat)
	a.AcceptRPS = round2(r.rps())
	a.AcceptP50, a.AcceptP99 = percentile(r.lat, 50), percentile(r.lat, 99)
	if a.AcceptN == 0 {
		return a, errors.Join(startErr, fmt.Errorf("async: no event accepted: %w", r.lastErr))
	}
	return a, startErr
}

// asyncStatus is the part of Flint's invocation record the bench reads.
type asyncStatus struct {
	Status     string          `json:"status"`
	EnqueuedAt time.Time       `json:"enqueuedAt"`
	StartedAt  *time.Time      `json:"startedAt"`
	Response   json.RawMessage `json:"response"`
}

// waitStatus polls GET /flint/v1/invocations/{id} until the invocation
// finished (at most 30s).
func waitStatus(ctx context.Context, hc *http.Client, base, id string) (*asyncStatus, error) {
	if id == "" {
		return nil, fmt.Errorf("async: no request id")
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/flint/v1/invocations/"+id, nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			var st asyncStatus
			if err := json.Unmarshal(b, &st); err != nil {
				return nil, fmt.Errorf("invocation %s status: %w", id, err)
			}
			switch st.Status {
			case "succeeded":
				return &st, nil
			case "failed", "expired":
				return nil, fmt.Errorf("invocation %s: %s", id, st.Status)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil, fmt.Errorf("invocation %s: not finished within 30s", id)
}
