package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of one bench run; its JSON form is what
// `flint bench --json FILE` writes. Field names under warm, cold, density
// and async are fixed (tools read them); extra fields may be added.
type Report struct {
	Date string `json:"date"`
	Host Host   `json:"host"`
	// Server is the measured Flint server's configuration.
	Server *ServerInfo `json:"server,omitempty"`
	Flint  *Result     `json:"flint"`
	RIE    *Result     `json:"rie,omitempty"`
}

// Host describes the machine and its load around the run.
type Host struct {
	Hostname   string     `json:"hostname"`
	CPUs       int        `json:"cpus"`
	MemTotalMB int64      `json:"mem_total_mib"`
	Kernel     string     `json:"kernel"`
	GoVersion  string     `json:"go_version"`
	LoadBefore [3]float64 `json:"load_before"`
	LoadAfter  [3]float64 `json:"load_after"`
	Command    string     `json:"command,omitempty"`
}

// Result is one target's numbers. Density and Async are Flint only.
type Result struct {
	Target  string   `json:"target"`
	Client  string   `json:"client"`
	Warm    *Warm    `json:"warm,omitempty"`
	Cold    *Cold    `json:"cold,omitempty"`
	Density *Density `json:"density,omitempty"`
	Async   *Async   `json:"async,omitempty"`
	// WarmMulti is the warm scenario on a function with
	// PerExecutionEnvironmentMaxConcurrency (Flint only), and
	// MultiConcurrency its setting or why it was not measured.
	WarmMulti        *Warm  `json:"warm_multi_concurrency,omitempty"`
	MultiConcurrency string `json:"multi_concurrency,omitempty"`
	// WarmModes (the emulator only) holds the warm scenario in each mode
	// ("default", "max_concurrency"); Warm is then the better per row.
	WarmModes map[string]*Warm `json:"warm_modes,omitempty"`
	// Floor (with the emulator only) is the warm scenario against a
	// minimal Runtime API emulator (ServeFloor: one runtime process per
	// client, nothing else) with the same client and bootstrap: the bound
	// of any emulator in Lambda's default mode on the machine.
	Floor *Warm    `json:"floor,omitempty"`
	Notes []string `json:"notes,omitempty"`
}

// The emulator's modes (Result.WarmModes keys).
const (
	rieDefault    = "default"
	rieConcurrent = "max_concurrency"
)

// bestWarm combines the emulator's two warm runs, taking for each row
// the better mode: sequential by p50, c1 by rate; c4 and c16 exist only
// in the concurrent mode. Either may be nil.
func bestWarm(def, conc *Warm) *Warm {
	switch {
	case def == nil && conc == nil:
		return nil
	case def == nil:
		c := *conc
		return &c
	case conc == nil:
		d := *def
		return &d
	}
	b := *conc
	var from []string
	if def.SeqP50 > 0 && (conc.SeqP50 == 0 || def.SeqP50 < conc.SeqP50) {
		b.SeqN, b.SeqP50, b.SeqP90, b.SeqP99 = def.SeqN, def.SeqP50, def.SeqP90, def.SeqP99
		from = append(from, "seq: default mode")
	} else {
		from = append(from, "seq: max-concurrency mode")
	}
	if def.C1RPS > conc.C1RPS {
		b.C1RPS, b.C1P50, b.C1P99 = def.C1RPS, def.C1P50, def.C1P99
		from = append(from, "c1: default mode")
	} else {
		from = append(from, "c1: max-concurrency mode")
	}
	b.Errors = def.Errors + conc.Errors
	if b.LastError == "" {
		b.LastError = def.LastError
	}
	b.Mode = "the better mode per row (" + strings.Join(from, ", ") + "; c4, c16: max-concurrency mode)"
	return &b
}

// Warm is the warm-invocation scenario.
type Warm struct {
	SeqN     int     `json:"seq_n"`
	SeqP50   float64 `json:"seq_p50_ms"`
	SeqP90   float64 `json:"seq_p90_ms"`
	SeqP99   float64 `json:"seq_p99_ms"`
	C1RPS    float64 `json:"c1_rps"`
	C4RPS    float64 `json:"c4_rps"`
	C16RPS   float64 `json:"c16_rps"`
	C1P50    float64 `json:"c1_p50_ms"`
	C4P50    float64 `json:"c4_p50_ms"`
	C16P50   float64 `json:"c16_p50_ms"`
	C1P99    float64 `json:"c1_p99_ms"`
	C4P99    float64 `json:"c4_p99_ms"`
	C16P99   float64 `json:"c16_p99_ms"`
	Errors   int     `json:"errors"`
	Duration float64 `json:"duration_s"` // per concurrency level
	Mode     string  `json:"mode,omitempty"`
	// Sandboxes is how many sandboxes the server held after the c16
	// level (Flint; 0 unknown).
	Sandboxes int `json:"sandboxes_after_c16,omitempty"`
	// LastError is the last failed invocation's error, if any failed.
	LastError string `json:"last_error,omitempty"`
}

// Cold is the cold-start scenario: Invoke to response with no sandbox.
type Cold struct {
	N      int     `json:"n"`
	P50    float64 `json:"p50_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
	Mode   string  `json:"mode,omitempty"`
	Errors int     `json:"errors"`
	// Breakdown holds the median of each step over the runs, in ms.
	Breakdown map[string]float64 `json:"breakdown_p50_ms,omitempty"`
	// Steps lists Breakdown's keys in the order they happen.
	Steps []string `json:"steps,omitempty"`
	// BreakdownStat is "p50" (each step's median over the runs) or
	// "mean" (each step's mean, from the server's metrics).
	BreakdownStat string `json:"breakdown_stat,omitempty"`
	// BreakdownSource says where the steps come from.
	BreakdownSource string `json:"breakdown_source,omitempty"`
}

// Density is the idle-sandbox memory and sandbox-creation scenario.
type Density struct {
	N int `json:"n"`
	// Capped says why N is below the --density-n asked for.
	Capped            string  `json:"capped,omitempty"`
	Sandboxes         int     `json:"sandboxes"` // distinct sandboxes that served the N invokes
	IdleOverheadMiB   float64 `json:"idle_overhead_mib"`
	HostDeltaMiB      float64 `json:"host_delta_per_sandbox_mib"`
	HostOverheadMiB   float64 `json:"host_overhead_mib"` // HostDeltaMiB - FunctionAnonMiB
	FunctionAnonMiB   float64 `json:"function_rss_anon_mib"`
	FunctionRSSMiB    float64 `json:"function_rss_mib"`
	ServerRSSDeltaMiB float64 `json:"server_rss_delta_per_sandbox_mib,omitempty"`
	// CgroupChargedMiB is the median charge of a sandbox's memory cgroup;
	// AccountedOverheadMiB is that minus the function's RssAnon plus the
	// server's growth per sandbox: a low-noise lower bound of the
	// overhead (in process only).
	CgroupChargedMiB     float64 `json:"cgroup_charged_mib,omitempty"`
	AccountedOverheadMiB float64 `json:"accounted_overhead_mib,omitempty"`
	Method               string  `json:"method"`
	FitByMemory          int64   `json:"fit_by_memory"`
	CreatesPerS          float64 `json:"creates_per_s"`
	Errors               int     `json:"errors"`
}

// Async is the asynchronous-invocation scenario.
type Async struct {
	AcceptN      int     `json:"accept_n"`
	AcceptRPS    float64 `json:"accept_rps"`
	AcceptP50    float64 `json:"accept_p50_ms"`
	AcceptP99    float64 `json:"accept_p99_ms"`
	StartN       int     `json:"start_n"`
	StartP50     float64 `json:"start_p50_ms"`
	StartP99     float64 `json:"start_p99_ms"`
	QueuedP50    float64 `json:"enqueued_to_started_p50_ms"`
	Errors       int     `json:"errors"`
	Concurrency  int     `json:"clients"` // closed-loop clients of the accept phase
	Backlogged   int     `json:"backlog_left,omitempty"`
	AcceptWindow float64 `json:"duration_s"`
	// Phases are the accept phases, in the order run: the first (clients)
	// is the one above; then 16 clients, with the backlog of the first
	// still running.
	Phases []AsyncPhase `json:"phases,omitempty"`
}

// AsyncPhase is one closed-loop accept phase of the async scenario.
type AsyncPhase struct {
	Clients   int     `json:"clients"`
	N         int     `json:"accept_n"`
	RPS       float64 `json:"accept_rps"`
	P50       float64 `json:"accept_p50_ms"`
	P99       float64 `json:"accept_p99_ms"`
	Errors    int     `json:"errors"`
	LastError string  `json:"last_error,omitempty"`
}

// WriteJSON writes r, indented, to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// PrintTable writes r as a human-readable table: Flint, the peer and
// their ratio side by side, with the targets.
func (r *Report) PrintTable(w io.Writer) {
	fmt.Fprintf(w, "flint bench  %s  host %s (%d CPUs, %d MiB)  load %.2f → %.2f\n",
		r.Date, r.Host.Hostname, r.Host.CPUs, r.Host.MemTotalMB, r.Host.LoadBefore[0], r.Host.LoadAfter[0])
	if r.Host.Command != "" {
		fmt.Fprintf(w, "command: %s\n", r.Host.Command)
	}
	if r.Server != nil {
		for _, l := range r.Server.describeLines() {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if r.Flint == nil {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	peer := r.RIE != nil
	if peer {
		fmt.Fprintln(tw, "metric\tflint\trie\tflint/rie\ttarget\t")
	} else {
		fmt.Fprintln(tw, "metric\tflint\ttarget\t")
	}
	row := func(name string, f, p float64, lowerBetter bool, target string) {
		if !peer {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\n", name, num(f), target)
			return
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", name, num(f), num(p), ratio(f, p, lowerBetter), target)
	}
	only := func(name string, f float64, target string) {
		if peer {
			fmt.Fprintf(tw, "%s\t%s\t\t\t%s\t\n", name, num(f), target)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\n", name, num(f), target)
		}
	}
	text := func(name, f, p string) {
		if peer {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\n", name, f, p)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t\t\n", name, f)
		}
	}
	fw, pw := r.Flint.Warm, (*Warm)(nil)
	fc, pc := r.Flint.Cold, (*Cold)(nil)
	if peer {
		pw, pc = r.RIE.Warm, r.RIE.Cold
	}
	if pw == nil {
		pw = &Warm{}
	}
	if pc == nil {
		pc = &Cold{}
	}
	warmRows := func(prefix string, fw *Warm) {
		row(prefix+" seq p50 ms", fw.SeqP50, pw.SeqP50, true, "flint/rie ≤ 0.5")
		row(prefix+" seq p90 ms", fw.SeqP90, pw.SeqP90, true, "")
		row(prefix+" seq p99 ms", fw.SeqP99, pw.SeqP99, true, "")
		row(prefix+" c1 inv/s", fw.C1RPS, pw.C1RPS, false, "")
		row(prefix+" c1 p50 ms", fw.C1P50, pw.C1P50, true, "")
		row(prefix+" c4 inv/s", fw.C4RPS, pw.C4RPS, false, "")
		row(prefix+" c16 inv/s", fw.C16RPS, pw.C16RPS, false, "flint/rie ≥ 1.5, 0 errors")
		row(prefix+" c16 p50 ms", fw.C16P50, pw.C16P50, true, "")
		row(prefix+" c16 p99 ms", fw.C16P99, pw.C16P99, true, "")
		text(prefix+" errors", strconv.Itoa(fw.Errors), strconv.Itoa(pw.Errors))
		if fw.Sandboxes > 0 {
			text(prefix+" sandboxes after c16", strconv.Itoa(fw.Sandboxes), "")
		}
	}
	if fw != nil {
		warmRows("warm", fw)
		if peer {
			d, c := r.RIE.WarmModes[rieDefault], r.RIE.WarmModes[rieConcurrent]
			if d == nil {
				d = &Warm{}
			}
			if c == nil {
				c = &Warm{}
			}
			text("  rie seq p50 ms: default | max-conc", "", num(d.SeqP50)+" | "+num(c.SeqP50))
			text("  rie seq p99 ms: default | max-conc", "", num(d.SeqP99)+" | "+num(c.SeqP99))
			text("  rie c1 inv/s: default | max-conc", "", num(d.C1RPS)+" | "+num(c.C1RPS))
			if f := r.RIE.Floor; f != nil {
				text("  floor seq p50 | p99 ms (minimal emulator)", "", num(f.SeqP50)+" | "+num(f.SeqP99))
				text("  floor c1 | c4 | c16 inv/s (minimal emulator)", "", num(f.C1RPS)+" | "+num(f.C4RPS)+" | "+num(f.C16RPS))
			}
		}
	}
	if r.Flint.WarmMulti != nil {
		warmRows("multi", r.Flint.WarmMulti)
	}
	if fc != nil {
		row("cold p50 ms", fc.P50, pc.P50, true, "≤ 5")
		row("cold p99 ms", fc.P99, pc.P99, true, "")
		stat := fc.BreakdownStat
		if stat == "" {
			stat = "p50"
		}
		for _, s := range fc.Steps {
			if strings.Contains(s, "init/") {
				continue // the init's own sub-steps: in the JSON
			}
			only("  cold step "+s+" "+stat+" ms", fc.Breakdown[s], "")
		}
		if peer {
			for _, s := range pc.Steps {
				fmt.Fprintf(tw, "%s\t\t%s\t\t\t\n", "  rie cold step "+s+" p50 ms", num(pc.Breakdown[s]))
			}
		}
	}
	if d := r.Flint.Density; d != nil {
		only("idle sandbox overhead MiB", d.IdleOverheadMiB, "≤ 1")
		only("  accounted: cgroup+server-anon MiB", d.AccountedOverheadMiB, "")
		only("  host: MemAvailable delta-anon MiB", d.HostOverheadMiB, "")
		only("  host delta per sandbox MiB", d.HostDeltaMiB, "")
		only("  cgroup charge per sandbox MiB", d.CgroupChargedMiB, "")
		only("  server RSS growth per sandbox MiB", d.ServerRSSDeltaMiB, "")
		only("  function RssAnon MiB", d.FunctionAnonMiB, "")
		only("idle sandboxes that fit (mem)", float64(d.FitByMemory), "")
		only("sandbox creations/s", d.CreatesPerS, "≥ 300")
	}
	if a := r.Flint.Async; a != nil {
		only(fmt.Sprintf("async accepted events/s (%d clients)", a.Concurrency), a.AcceptRPS, "≥ 5000")
		only("  async accept p50 ms", a.AcceptP50, "")
		only("  async accept p99 ms", a.AcceptP99, "")
		for _, p := range a.Phases[min(1, len(a.Phases)):] {
			only(fmt.Sprintf("  accepted/s, %d clients, after the above", p.Clients), p.RPS, "")
			only(fmt.Sprintf("  accept p50 ms, %d clients", p.Clients), p.P50, "")
		}
		only("async 202→start p50 ms", a.StartP50, "≤ 5")
		only("async 202→start p99 ms", a.StartP99, "")
	}
	tw.Flush()
	if r.Flint.MultiConcurrency != "" && r.Flint.WarmMulti == nil {
		fmt.Fprintf(w, "%s\n", r.Flint.MultiConcurrency)
	} else if r.Flint.WarmMulti != nil {
		fmt.Fprintf(w, "multi rows: %s\n", r.Flint.WarmMulti.Mode)
	}
	if peer && r.RIE.Warm != nil {
		fmt.Fprintf(w, "rie warm: %s\n", r.RIE.Warm.Mode)
	}
	if peer && r.RIE.Floor != nil {
		fmt.Fprintf(w, "floor: the same client and bootstrap against a minimal Runtime API emulator (flint bench floor-emulator: one runtime process per client, as Lambda's default mode; hands each payload to a runtime's /next and its /response back, nothing else): what no emulator in that mode gets past\n")
	}
	if d := r.Flint.Density; d != nil && d.Capped != "" {
		fmt.Fprintf(w, "density: %s\n", d.Capped)
	}
	if fc != nil && fc.BreakdownSource != "" {
		fmt.Fprintf(w, "cold steps: %s\n", fc.BreakdownSource)
	}
	for _, res := range []*Result{r.Flint, r.RIE} {
		if res == nil {
			continue
		}
		for _, n := range res.Notes {
			fmt.Fprintf(w, "note (%s): %s\n", res.Target, n)
		}
	}
}

// ratio is f/p with "better" or "worse" for Flint, or "-".
func ratio(f, p float64, lowerBetter bool) string {
	if f <= 0 || p <= 0 {
		return "-"
	}
	better := "better"
	if (f < p) != lowerBetter {
		better = "worse"
	}
	return fmt.Sprintf("%.2f (%s)", f/p, better)
}

func num(v float64) string {
	switch {
	case v == 0:
		return "-"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// hostInfo describes this machine.
func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	h.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if kb, err := meminfoKB("MemTotal:"); err == nil {
		h.MemTotalMB = kb / 1024
	}
	h.LoadBefore = loadavg()
	return h
}

func loadavg() [3]float64 {
	var l [3]float64
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscanf(string(b), "%f %f %f", &l[0], &l[1], &l[2])
	}
	return l
}

// meminfoKB reads one field of /proc/meminfo, in kB.
func meminfoKB(field string) (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb); err != nil {
				return 0, fmt.Errorf("meminfo %s: %w", field, err)
			}
			return kb, nil
		}
	}
	return 0, fmt.Errorf("meminfo: no %s", field)
}

// percentile returns the p-th percentile (0..100) of ds in milliseconds,
// nearest-rank; 0 for no samples.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return ms(s[i])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round2(v float64) float64 { return math.Round(v*100) / 100 }
