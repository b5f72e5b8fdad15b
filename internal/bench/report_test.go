package bench

import (
	"bytes"
	"strings"
	"testing"
)

// A scrape of a server before and after two cold starts of function f
// (one of another function g in between, which must not count) and three
// driver creations.
const (
	metricsBefore = `# TYPE flint_cold_start_step_seconds histogram
flint_cold_start_step_seconds_sum{function="f",step="placement",version="$LATEST"} 0.001
flint_cold_start_step_seconds_count{function="f",step="placement",version="$LATEST"} 1
flint_cold_start_step_seconds_sum{function="f",step="sandbox_create",version="$LATEST"} 0.010
flint_cold_start_step_seconds_count{function="f",step="sandbox_create",version="$LATEST"} 1
flint_cold_start_step_seconds_sum{function="f",step="runtime_init",version="$LATEST"} 0.002
flint_cold_start_step_seconds_count{function="f",step="runtime_init",version="$LATEST"} 1
# TYPE flint_sandbox_create_step_seconds histogram
flint_sandbox_create_step_seconds_sum{host="h",step="wait-init"} 0.5
flint_sandbox_create_step_seconds_count{host="h",step="wait-init"} 100
# TYPE go_sched_gomaxprocs_threads gauge
go_sched_gomaxprocs_threads 2
`
	metricsAfter = `# TYPE flint_cold_start_step_seconds histogram
flint_cold_start_step_seconds_sum{function="f",step="placement",version="$LATEST"} 0.003
flint_cold_start_step_seconds_count{function="f",step="placement",version="$LATEST"} 3
flint_cold_start_step_seconds_sum{function="f",step="sandbox_create",version="$LATEST"} 0.018
flint_cold_start_step_seconds_count{function="f",step="sandbox_create",version="$LATEST"} 3
flint_cold_start_step_seconds_sum{function="f",step="runtime_init",version="$LATEST"} 0.006
flint_cold_start_step_seconds_count{function="f",step="runtime_init",version="$LATEST"} 3
flint_cold_start_step_seconds_sum{function="g",step="sandbox_create",version="$LATEST"} 9
flint_cold_start_step_seconds_count{function="g",step="sandbox_create",version="$LATEST"} 1
# TYPE flint_sandbox_create_step_seconds histogram
flint_sandbox_create_step_seconds_sum{host="h",step="wait-init"} 0.512
flint_sandbox_create_step_seconds_count{host="h",step="wait-init"} 103
flint_sandbox_create_step_seconds_sum{host="h",step="zzz-new"} 0.003
flint_sandbox_create_step_seconds_count{host="h",step="zzz-new"} 3
flint_sandbox_create_step_seconds_sum{host="h",step="cgroup"} 0.0006
flint_sandbox_create_step_seconds_count{host="h",step="cgroup"} 3
# TYPE go_sched_gomaxprocs_threads gauge
go_sched_gomaxprocs_threads 2
`
)

func TestMetricsBreakdown(t *testing.T) {
	before, err := parseMetrics(strings.NewReader(metricsBefore))
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseMetrics(strings.NewReader(metricsAfter))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := after.gauge("go_sched_gomaxprocs_threads", nil); !ok || v != 2 {
		t.Errorf("gomaxprocs = %v, %v", v, ok)
	}
	bd, steps := metricsBreakdown(before, after, "f", 10, 1)
	want := map[string]float64{"placement": 1, "code fetch": 0, "sandbox create": 4, "runtime init": 2,
		"first invoke": 1, "api+other": 2, "  driver cgroup": 0.2, "  driver wait-init": 4, "  driver zzz-new": 1}
	for k, v := range want {
		if bd[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, bd[k], v, bd)
		}
	}
	wantSteps := "placement,code fetch,sandbox create,runtime init,first invoke,api+other,  driver cgroup,  driver wait-init,  driver zzz-new"
	if got := strings.Join(steps, ","); got != wantSteps {
		t.Errorf("steps %s, want %s", got, wantSteps)
	}
	if bd, _ := metricsBreakdown(before, after, "nobody", 10, 1); bd != nil {
		t.Errorf("breakdown of a function without cold starts: %v", bd)
	}
}

func TestParseLogLine(t *testing.T) {
	for _, c := range []struct{ line, level, msg string }{
		{`time=2026-11-29T19:49:15.115Z level=WARN msg="function no longer exists, dropping event" component=asyncq`, "WARN", "function no longer exists, dropping event"},
		{`time=x level=INFO msg=started port=9000`, "INFO", "started"},
		{`level=ERROR msg="say \"hi\"" a=1`, "ERROR", `say "hi"`},
	} {
		level, msg, ok := parseLogLine(c.line)
		if !ok || level != c.level || msg != c.msg {
			t.Errorf("%q: %q %q %v", c.line, level, msg, ok)
		}
	}
	if _, _, ok := parseLogLine("panic: something"); ok {
		t.Error("a non-slog line parsed")
	}
}

// TestLogScanner: records at or above the level are forwarded, at most
// maxRepeats per message, the rest counted; nothing after silence.
func TestLogScanner(t *testing.T) {
	var out bytes.Buffer
	s := newLogScanner(&out, logRank("WARN"))
	var in strings.Builder
	for range 5 {
		in.WriteString("time=t level=WARN msg=\"stalled\" n=1\n")
	}
	in.WriteString("time=t level=INFO msg=\"sandbox created\"\n")
	in.WriteString("goroutine 1 [running]:\n")
	s.scan(strings.NewReader(in.String()))
	if n := strings.Count(out.String(), "stalled"); n != maxRepeats {
		t.Errorf("forwarded %d× stalled, want %d:\n%s", n, maxRepeats, out.String())
	}
	if strings.Contains(out.String(), "sandbox created") {
		t.Error("forwarded an INFO record")
	}
	if r := s.repeated(); len(r) != 1 || !strings.Contains(r[0], "5×") {
		t.Errorf("repeated = %q", r)
	}
	if !strings.Contains(s.tail(), "goroutine 1") {
		t.Errorf("tail lost the last line: %q", s.tail())
	}
	out.Reset()
	s.silence()
	s.scan(strings.NewReader("time=t level=ERROR msg=\"late\"\n"))
	if out.Len() != 0 {
		t.Errorf("forwarded after silence: %q", out.String())
	}
}

func TestBestWarm(t *testing.T) {
	def := &Warm{SeqP50: 0.6, SeqP99: 2, C1RPS: 1000, Errors: 1}
	conc := &Warm{SeqP50: 0.4, SeqP99: 3, C1RPS: 900, C4RPS: 3000, C16RPS: 4000, Errors: 2}
	b := bestWarm(def, conc)
	if b.SeqP50 != 0.4 || b.SeqP99 != 3 || b.C1RPS != 1000 || b.C16RPS != 4000 || b.Errors != 3 {
		t.Errorf("best = %+v", b)
	}
	if !strings.Contains(b.Mode, "seq: max-concurrency mode") || !strings.Contains(b.Mode, "c1: default mode") {
		t.Errorf("mode %q", b.Mode)
	}
	if bestWarm(nil, nil) != nil || bestWarm(def, nil).SeqP50 != 0.6 || bestWarm(nil, conc).C16RPS != 4000 {
		t.Error("best of one or none")
	}
}

// TestPrintTable checks the rows the issue asks for are in the table,
// with both emulator modes and the server's configuration.
func TestPrintTable(t *testing.T) {
	r := &Report{Date: "d", Host: Host{Command: "flint bench --peer rie"},
		Server: &ServerInfo{How: "child process", Driver: "process", SandboxInit: "the server's default (no --sandbox-init)",
			Auth: "dev", GOMAXPROCS: 2, MemoryOvercommit: "1 (default)", Flags: "none (the server's defaults)"},
		Flint: &Result{
			Warm:             &Warm{SeqP50: 0.4, SeqP99: 1, C1RPS: 2000, C4RPS: 4000, C16RPS: 5000},
			MultiConcurrency: "multi-concurrency: not supported by this server (x)",
			Cold:             &Cold{P50: 6, P99: 9, Steps: []string{"sandbox create"}, Breakdown: map[string]float64{"sandbox create": 3}, BreakdownStat: "mean"},
			Density:          &Density{IdleOverheadMiB: 0.3, CreatesPerS: 200},
			Async:            &Async{AcceptRPS: 6000, Concurrency: 16, StartP50: 1},
		},
		RIE: &Result{Warm: &Warm{SeqP50: 0.5, C1RPS: 1000, C16RPS: 4000},
			WarmModes: map[string]*Warm{rieDefault: {SeqP50: 0.7}, rieConcurrent: {SeqP50: 0.5}}},
	}
	var b bytes.Buffer
	r.PrintTable(&b)
	out := b.String()
	for _, want := range []string{"driver: process", "GOMAXPROCS: 2", "sandbox init: the server's default", "overcommit 1 (default)",
		"warm seq p50 ms", "warm seq p99 ms", "warm c1 inv/s", "warm c4 inv/s", "warm c16 inv/s", "0.80 (better)",
		"0.70 | 0.50", "cold p50 ms", "cold step sandbox create mean ms", "idle sandbox overhead MiB", "sandbox creations/s",
		"async accepted events/s (16 clients)", "async 202→start p50 ms", "multi-concurrency: not supported by this server"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	r.Flint.WarmMulti = &Warm{SeqP50: 0.3, C16RPS: 9000, Mode: "N=16"}
	b.Reset()
	r.PrintTable(&b)
	if !strings.Contains(b.String(), "multi c16 inv/s") || !strings.Contains(b.String(), "2.25 (better)") {
		t.Errorf("no multi-concurrency rows:\n%s", b.String())
	}
}
