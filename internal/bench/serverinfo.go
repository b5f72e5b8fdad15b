package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ServerInfo is the configuration of the Flint server measured, as the
// report prints it: what a reviewer needs to repeat the run.
type ServerInfo struct {
	// How is "child process", "in-process" or "endpoint".
	How string `json:"how"`
	// Command is the server's command line (child process).
	Command string `json:"command,omitempty"`
	// Version is the binary's VCS revision and Go version.
	Version string `json:"version,omitempty"`
	// Flags are the flags given beyond --data and --listen ("" the
	// server's defaults).
	Flags        string `json:"flags"`
	Driver       string `json:"driver,omitempty"`
	SandboxInit  string `json:"sandbox_init"`
	Auth         string `json:"auth"`
	SignedClient bool   `json:"signed_client"`
	GOMAXPROCS   int    `json:"gomaxprocs,omitempty"`
	// HostMemoryMB is what placement may reserve on the host (its
	// --host-memory times --memory-overcommit).
	HostMemoryMB     int    `json:"host_memory_mb,omitempty"`
	MemoryOvercommit string `json:"memory_overcommit"`
	MaxSandboxes     int    `json:"max_sandboxes,omitempty"`
	Runtimes         int    `json:"runtimes,omitempty"`
}

// stats is the part of GET /flint/v1/stats the bench reads.
type stats struct {
	Driver string `json:"driver"`
	Hosts  []struct {
		MemoryMB     int `json:"memoryMB"`
		MaxSandboxes int `json:"maxSandboxes"`
		FreeMemoryMB int
	} `json:"hosts"`
	Runtimes    []string `json:"runtimes"`
	SandboxInit string   `json:"sandboxInit"`
	Sandboxes   struct {
		Idle, Busy, Creating int
	} `json:"sandboxes"`
}

// sandboxCount is how many sandboxes the server holds now (-1: unknown).
func (t *flintTarget) sandboxCount(ctx context.Context) int {
	st, err := t.stats(ctx)
	if err != nil {
		return -1
	}
	return st.Sandboxes.Idle + st.Sandboxes.Busy + st.Sandboxes.Creating
}

// getRoot GETs a root-only Flint path, signed.
func (t *flintTarget) getRoot(ctx context.Context, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: t.signer(http.DefaultTransport)}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %.200s", path, resp.Status, b)
	}
	return b, nil
}

func (t *flintTarget) stats(ctx context.Context) (*stats, error) {
	b, err := t.getRoot(ctx, "/flint/v1/stats")
	if err != nil {
		return nil, err
	}
	var st stats
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	return &st, nil
}

// metrics scrapes the server's Prometheus metrics.
func (t *flintTarget) metrics(ctx context.Context) (promSnapshot, error) {
	b, err := t.getRoot(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	return parseMetrics(strings.NewReader(string(b)))
}

// promSnapshot is one scrape: metric families by name.
type promSnapshot map[string]*dto.MetricFamily

func parseMetrics(r io.Reader) (promSnapshot, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return fams, nil
}

// matches reports whether m has every label in want.
func matches(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// gauge is the value of the first gauge (or counter) of name matching
// want; ok false when there is none.
func (s promSnapshot) gauge(name string, want map[string]string) (float64, bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !matches(m, want) {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// histSums sums, per value of the label by, the sum and count of the
// histograms of name matching want.
func (s promSnapshot) histSums(name, by string, want map[string]string) map[string][2]float64 {
	out := map[string][2]float64{}
	f := s[name]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		if m.Histogram == nil || !matches(m, want) {
			continue
		}
		k := label(m, by)
		v := out[k]
		v[0] += m.Histogram.GetSampleSum()
		v[1] += float64(m.Histogram.GetSampleCount())
		out[k] = v
	}
	return out
}

// meanDeltas gives, per label value, the mean (ms) of the observations
// made between before and after, and how many there were.
func meanDeltas(before, after promSnapshot, name, by string, want map[string]string) (map[string]float64, map[string]int) {
	b, a := before.histSums(name, by, want), after.histSums(name, by, want)
	means, counts := map[string]float64{}, map[string]int{}
	for k, av := range a {
		bv := b[k]
		n := av[1] - bv[1]
		if n <= 0 {
			continue
		}
		means[k] = round3((av[0] - bv[0]) / n * 1000)
		counts[k] = int(n)
	}
	return means, counts
}

// defaultInit is ServerInfo.SandboxInit of a server the bench started
// without --sandbox-init.
const defaultInit = "the server's default (no --sandbox-init)"

// describe gathers the server's configuration: from the command line the
// bench gave it and from the server itself (stats, metrics).
func (t *flintTarget) describe(ctx context.Context, cfg *Config) *ServerInfo {
	si := &ServerInfo{SignedClient: t.sign, Auth: "required", MemoryOvercommit: "1 (default)",
		SandboxInit: defaultInit}
	if !t.sign {
		si.Auth = "dev (unsigned requests accepted)"
	}
	var flags []string
	switch {
	case t.child != nil:
		si.How = "child process"
		si.Command = strings.Join(t.child.args, " ")
		si.Version = binaryVersion(t.child.args[0])
		flags = append(flags, cfg.ServerArgs...)
		if cfg.Auth != "" {
			flags = append(flags, "--auth", string(cfg.Auth))
		}
	case t.inProcess:
		si.How = "in-process (server.Run in the bench's own process; not the default server)"
		if exe, err := os.Executable(); err == nil {
			si.Version = binaryVersion(exe)
		}
		flags = []string{"--host-memory", "1048576", "--max-sandboxes", "100000"}
		if cfg.SandboxInit != "" {
			flags = append(flags, "--sandbox-init", cfg.SandboxInit)
		}
		si.GOMAXPROCS = runtime.GOMAXPROCS(0)
	default:
		si.How = "endpoint " + t.base
		si.SandboxInit = "unknown (a server started elsewhere)"
		si.MemoryOvercommit = "unknown"
	}
	si.Flags = strings.Join(flags, " ")
	switch {
	case t.child == nil && !t.inProcess:
		si.Flags = "unknown (a server started elsewhere)"
	case si.Flags == "":
		si.Flags = "none (the server's defaults)"
	}
	if i := slices.Index(flags, "--sandbox-init"); i >= 0 && i+1 < len(flags) {
		si.SandboxInit = flags[i+1]
	}
	for i, f := range flags {
		if v, ok := strings.CutPrefix(f, "--sandbox-init="); ok {
			si.SandboxInit = v
		}
		if v, ok := strings.CutPrefix(f, "--memory-overcommit="); ok {
			si.MemoryOvercommit = v
		}
		if f == "--memory-overcommit" && i+1 < len(flags) {
			si.MemoryOvercommit = flags[i+1]
		}
	}
	if st, err := t.stats(ctx); err == nil {
		si.Driver = st.Driver
		switch {
		case st.SandboxInit == "":
		case si.SandboxInit == defaultInit: // what the server chose itself
			si.SandboxInit = st.SandboxInit + ", " + defaultInit
		default:
			si.SandboxInit = st.SandboxInit
		}
		si.Runtimes = len(st.Runtimes)
		if len(st.Hosts) > 0 {
			si.HostMemoryMB, si.MaxSandboxes = st.Hosts[0].MemoryMB, st.Hosts[0].MaxSandboxes
		}
	}
	if si.GOMAXPROCS == 0 {
		if m, err := t.metrics(ctx); err == nil {
			if v, ok := m.gauge("go_sched_gomaxprocs_threads", nil); ok {
				si.GOMAXPROCS = int(v)
			}
		}
	}
	return si
}

// freeMemoryMB is what placement may still reserve on the server's
// first host (-1 when unknown).
func (t *flintTarget) freeMemoryMB(ctx context.Context) int {
	st, err := t.stats(ctx)
	if err != nil || len(st.Hosts) == 0 {
		return -1
	}
	return st.Hosts[0].FreeMemoryMB
}

// describeLines renders si as "key: value" lines for the table.
func (si *ServerInfo) describeLines() []string {
	var out []string
	add := func(k, v string) {
		if v != "" && v != "0" {
			out = append(out, k+": "+v)
		}
	}
	add("server", si.How)
	add("command", si.Command)
	add("version", si.Version)
	add("flags", si.Flags)
	add("driver", si.Driver)
	add("sandbox init", si.SandboxInit)
	client := "plain (unsigned)"
	if si.SignedClient {
		client = "SigV4-signed"
	}
	add("auth", si.Auth+"; timed requests "+client)
	add("GOMAXPROCS", strconv.Itoa(si.GOMAXPROCS))
	mem := ""
	if si.HostMemoryMB > 0 {
		mem = fmt.Sprintf("%d MB reservable, ", si.HostMemoryMB)
	}
	add("host memory", mem+"overcommit "+si.MemoryOvercommit)
	add("max sandboxes", strconv.Itoa(si.MaxSandboxes))
	return out
}
