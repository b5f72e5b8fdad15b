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
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

var noop = []byte(`{}`)

// warmTarget readies the target for c concurrent clients (the peer may
// need a differently started emulator per level) and gives the URL to
// post to, how to build one client's HTTP client, and a cleanup.
type warmTarget func(ctx context.Context, clients int) (url string, newClient func() *http.Client, cleanup func(), err error)

// warmLevels are the closed-loop client counts of the warm scenario.
var warmLevels = []int{1, 4, 16}

// runWarm measures warm invocations: seq sequential ones, then closed-loop
// clients at each of levels for d each. Every level first warms its
// sandboxes up. Each client is one goroutine posting `{}` back to back
// on its own keep-alive connection (its own http.Client, at most one
// connection).
func runWarm(ctx context.Context, cfg *Config, target warmTarget, levels []int) (*Warm, error) {
	w := &Warm{Duration: cfg.Duration.Seconds()}
	level := func(c int) ([]*invoker, func(), error) {
		url, newClient, cleanup, err := target(ctx, c)
		if err != nil {
			return nil, nil, err
		}
		invs := make([]*invoker, c)
		for i := range invs {
			invs[i] = &invoker{url: url, hc: newClient()}
		}
		return invs, func() {
			for _, inv := range invs {
				inv.hc.CloseIdleConnections()
			}
			cleanup()
		}, nil
	}
	call := func(invs []*invoker) func(ctx context.Context, client int) error {
		return func(ctx context.Context, client int) error { _, err := invs[client].invoke(ctx, noop); return err }
	}
	invs, cleanup, err := level(1)
	if err != nil {
		return nil, err
	}
	// Warm up (the first call is the cold start). Errors here count
	// (the emulator's concurrent mode may answer Runtime.Unavailable)
	// but stop the run only when nothing succeeds.
	if r := closedLoop(ctx, 1, 0, max(cfg.SeqN/10, 5), call(invs)); r.errs > 0 {
		if len(r.lat) == 0 {
			cleanup()
			return nil, fmt.Errorf("warm-up: %d errors, last: %w", r.errs, r.lastErr)
		}
		w.Errors += r.errs
		w.LastError = fmt.Sprintf("warm-up: %v", r.lastErr)
	}
	seq := closedLoop(ctx, 1, 0, cfg.SeqN, call(invs))
	w.SeqN = len(seq.lat)
	w.Errors += seq.errs
	if seq.errs > 0 {
		w.LastError = fmt.Sprintf("seq: %v", seq.lastErr)
	}
	w.SeqP50, w.SeqP90, w.SeqP99 = percentile(seq.lat, 50), percentile(seq.lat, 90), percentile(seq.lat, 99)
	cleanup()
	for _, c := range levels {
		invs, cleanup, err := level(c)
		if err != nil {
			return nil, err
		}
		closedLoop(ctx, c, 0, c*20, call(invs)) // create and warm c sandboxes
		r := closedLoop(ctx, c, cfg.Duration, 0, call(invs))
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
	var before promSnapshot
	if t.capture == nil {
		before, _ = t.metrics(ctx) // nil: no breakdown beyond REPORT
	}
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
					if !strings.Contains(s.name, "/") { // init/* steps run inside wait-prepared and exec
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
	c.BreakdownStat = "p50"
	if t.capture != nil {
		c.BreakdownSource = "in-process: the worker manager's and the driver's records of each creation, joined by sandbox id"
	} else {
		c.BreakdownSource = "REPORT line only (Init Duration, Duration)"
	}
	for _, s := range driverOrder {
		k := "  driver " + s
		c.Breakdown[k] = round3(percentile(driverSteps[s], 50))
		c.Steps = append(c.Steps, k)
	}
	if before != nil {
		if after, err := t.metrics(ctx); err == nil {
			var totalSum, durSum time.Duration
			for _, d := range totals {
				totalSum += d
			}
			for _, d := range parts["first invoke"] {
				durSum += d
			}
			meanTotal := ms(totalSum) / float64(len(totals))
			meanDur := ms(durSum) / float64(max(len(parts["first invoke"]), 1))
			if steps, steps2 := metricsBreakdown(before, after, name, meanTotal, meanDur); steps != nil {
				c.Breakdown, c.Steps = steps, steps2
				c.BreakdownStat = "mean"
				c.BreakdownSource = "the server's metrics over the cold runs: flint_cold_start_step_seconds of the function (request path), flint_sandbox_create_step_seconds of every creation in that window (driver steps), REPORT's Duration (first invoke); api+other = mean total - the rest"
			}
		}
	}
	return c, nil
}

// coldStepNames maps the metrics' cold-start steps to the report's, in
// order.
var coldStepNames = [][2]string{{"placement", "placement"}, {"code_fetch", "code fetch"},
	{"sandbox_create", "sandbox create"}, {"runtime_init", "runtime init"}}

// knownDriverSteps orders the process driver's steps as they happen;
// others follow by name.
var knownDriverSteps = []string{"claim", "cgroup", "channels", "start", "network", "send-config", "cgroup-add", "wait-prepared",
	"cpu-pin", "send-claim", "claim-cgroup", "serve", "cpu-limit", "exec", "reset-peak"}

// metricsBreakdown splits the mean cold start of function fn from the
// server's step histograms between two scrapes; nil when the server
// recorded no cold-start step of fn in between.
func metricsBreakdown(before, after promSnapshot, fn string, meanTotal, meanDur float64) (map[string]float64, []string) {
	cold, _ := meanDeltas(before, after, "flint_cold_start_step_seconds", "step", map[string]string{"function": fn})
	if len(cold) == 0 {
		return nil, nil
	}
	bd := map[string]float64{}
	var steps []string
	rest := meanTotal - meanDur
	for _, n := range coldStepNames {
		bd[n[1]] = cold[n[0]]
		steps = append(steps, n[1])
		rest -= cold[n[0]]
	}
	bd["first invoke"], bd["api+other"] = round3(meanDur), round3(rest)
	steps = append(steps, "first invoke", "api+other")
	driver, _ := meanDeltas(before, after, "flint_sandbox_create_step_seconds", "step", nil)
	var names []string
	for k := range driver {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := slices.Index(knownDriverSteps, names[i]), slices.Index(knownDriverSteps, names[j])
		if a < 0 {
			a = len(knownDriverSteps)
		}
		if b < 0 {
			b = len(knownDriverSteps)
		}
		if a != b {
			return a < b
		}
		return names[i] < names[j]
	})
	for _, k := range names {
		key := "  driver " + k
		bd[key] = driver[k]
		steps = append(steps, key)
	}
	return bd, steps
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
	var capped string
	if free := t.freeMemoryMB(ctx); free >= 0 && n*smallMB > free*9/10 {
		// The server's memory reservations, not real memory, would
		// refuse the rest (429): stay within them.
		n = max(free*9/10/smallMB, 1)
		capped = fmt.Sprintf("%d sandboxes, not %d: the server reserves %d MB per sandbox and had %d MB free", n, cfg.DensityN, smallMB, free)
	}
	inv := &invoker{url: invokeURL(t.base, name), hc: t.httpClient(n)}
	d := &Density{N: n, Capped: capped}
	var cgBefore map[string]string
	if t.child != nil {
		cgBefore = sandboxCgroups()
	}
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
	rssBefore := t.serverRSSKB()
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
	rssAfter := t.serverRSSKB()
	var charged []time.Duration // kB per sandbox cgroup
	if t.capture != nil {
		for _, c := range t.capture.take() {
			if kb, ok := cgroupMemoryKB(c.id); ok {
				charged = append(charged, time.Duration(kb)*time.Millisecond)
			}
		}
		t.capture.setCapturing(false)
	}
	if cgBefore != nil {
		// The child's sandboxes are the memory cgroups that appeared.
		for id, f := range sandboxCgroups() {
			if _, old := cgBefore[id]; old {
				continue
			}
			if kb, ok := readCgroupKB(f); ok {
				charged = append(charged, time.Duration(kb)*time.Millisecond)
			}
		}
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
	if rssBefore > 0 && rssAfter > 0 {
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

// cgroupPatterns find the memory cgroup usage file of the process
// driver's sandbox ID (cgroup v1 or v2, default mount; the server's cgroup
// parent is "flint-<data dir digest>").
var cgroupPatterns = []string{
	"/sys/fs/cgroup/memory/flint*/%s/memory.usage_in_bytes",
	"/sys/fs/cgroup/flint*/%s/memory.current",
	"/sys/fs/cgroup/unified/flint*/%s/memory.current",
}

// cgroupMemoryKB reads what the memory cgroup of sandbox id is charged.
func cgroupMemoryKB(id string) (int64, bool) {
	for _, pat := range cgroupPatterns {
		m, _ := filepath.Glob(fmt.Sprintf(pat, id))
		for _, f := range m {
			if kb, ok := readCgroupKB(f); ok {
				return kb, true
			}
		}
	}
	return 0, false
}

// sandboxCgroups lists every sandbox memory cgroup of every Flint server
// on this host: usage file by "parent/id".
func sandboxCgroups() map[string]string {
	out := map[string]string{}
	for _, pat := range cgroupPatterns {
		m, _ := filepath.Glob(fmt.Sprintf(pat, "*"))
		for _, f := range m {
			dir := filepath.Dir(f)
			out[filepath.Base(filepath.Dir(dir))+"/"+filepath.Base(dir)] = f
		}
	}
	return out
}

func readCgroupKB(f string) (int64, bool) {
	b, err := os.ReadFile(f)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || v <= 0 {
		return 0, false
	}
	return v / 1024, true
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

// serverRSSKB is the server process's resident memory (kB; 0 when it
// runs elsewhere).
func (t *flintTarget) serverRSSKB() int64 {
	path := "/proc/self/status"
	switch {
	case t.child != nil:
		path = fmt.Sprintf("/proc/%d/status", t.child.pid())
	case !t.inProcess:
		return 0
	}
	kb, err := readStatusField(path, "VmRSS:")
	if err != nil {
		return 0
	}
	return kb
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
	hc := t.httpClient(1)
	inv := &invoker{url: invokeURL(t.base, name), hc: hc}
	a := &Async{Concurrency: cfg.AsyncClients, AcceptWindow: cfg.AsyncDuration.Seconds()}
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

	// The accept phases: the configured clients first (the target row,
	// on an empty queue), then 16 (the warm scenario's top level, and
	// what earlier runs used) under the backlog the first one left.
	levels := []int{a.Concurrency}
	if a.Concurrency != 16 {
		levels = append(levels, 16)
	}
	for _, c := range levels {
		ph := acceptPhase(ctx, cfg, t, inv.url, c)
		a.Errors += ph.Errors
		a.Phases = append(a.Phases, ph)
		if ph.N == 0 {
			return a, errors.Join(startErr, fmt.Errorf("async: no event accepted from %d clients: %s", c, ph.LastError))
		}
	}
	p := a.Phases[0]
	a.AcceptN, a.AcceptRPS, a.AcceptP50, a.AcceptP99 = p.N, p.RPS, p.P50, p.P99
	return a, startErr
}

// acceptPhase posts Event invocations of url from clients closed-loop
// clients for cfg.AsyncDuration, each on its own keep-alive connection
// (as in warm); an event counts once its 202 is back, which Flint sends
// only after the backbone stored it.
func acceptPhase(ctx context.Context, cfg *Config, t *flintTarget, url string, clients int) AsyncPhase {
	invs := make([]*invoker, clients)
	for i := range invs {
		invs[i] = &invoker{url: url, hc: t.httpClient(1)}
		defer invs[i].hc.CloseIdleConnections()
	}
	ev := func(ctx context.Context, client int) error {
		resp, err := invs[client].invoke(ctx, noop, "X-Amz-Invocation-Type", "Event")
		if err == nil && resp.status != http.StatusAccepted {
			err = fmt.Errorf("event invoke: status %d", resp.status)
		}
		return err
	}
	r := closedLoop(ctx, clients, cfg.AsyncDuration, 0, ev)
	ph := AsyncPhase{Clients: clients, N: len(r.lat), RPS: round2(r.rps()), P50: percentile(r.lat, 50),
		P99: percentile(r.lat, 99), Errors: r.errs}
	if r.lastErr != nil {
		ph.LastError = r.lastErr.Error()
	}
	return ph
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
