package bench

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzReportMs feeds REPORT-like log tails (server output the bench
// parses) to reportMs: it must never panic, never return a negative
// duration, and must find a value it was given in Lambda's format.
func FuzzReportMs(f *testing.F) {
	f.Add("REPORT RequestId: x\tDuration: 0.49 ms\tBilled Duration: 1 ms\tInit Duration: 12.50 ms\t", 1.25)
	f.Add("Init Duration: 1e400 ms", 0.0)
	f.Add("", 3.0)
	f.Fuzz(func(t *testing.T, log string, v float64) {
		if d, ok := reportMs(initDurRE, log); ok && d < 0 {
			t.Fatalf("negative init duration %v from %q", d, log)
		}
		if d, ok := reportMs(durRE, log); ok && d < 0 {
			t.Fatalf("negative duration %v from %q", d, log)
		}
		if v < 0 || v > 1e6 || v != v {
			return
		}
		line := fmt.Sprintf("%s\nREPORT RequestId: r\tDuration: %.2f ms\tInit Duration: %.2f ms\t", strings.ReplaceAll(log, "Duration", "D"), v, v)
		printed, _ := strconv.ParseFloat(fmt.Sprintf("%.2f", v), 64)
		want := time.Duration(printed * float64(time.Millisecond))
		got, ok := reportMs(initDurRE, line)
		if !ok || absDur(got-want) > time.Microsecond*10 {
			t.Fatalf("init duration of %q = %v, %v; want %v", line, got, ok, want)
		}
		got, ok = reportMs(durRE, line)
		if !ok || absDur(got-want) > time.Microsecond*10 {
			t.Fatalf("duration of %q = %v, %v; want %v", line, got, ok, want)
		}
	})
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// FuzzParseLogLine feeds server log lines (the child's stderr) to
// parseLogLine: never a panic, and a message written by slog's
// TextHandler quoting comes back as it was.
func FuzzParseLogLine(f *testing.F) {
	f.Add(`time=t level=WARN msg="a b" k=v`, "stalled")
	f.Add(`level= msg=`, "")
	f.Fuzz(func(t *testing.T, line, msg string) {
		parseLogLine(line)
		l := "time=t level=WARN msg=" + strconv.Quote(msg) + " k=v"
		level, got, ok := parseLogLine(l)
		if !ok || level != "WARN" || got != msg {
			t.Fatalf("%q: %q %q %v", l, level, got, ok)
		}
	})
}
