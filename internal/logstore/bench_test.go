package logstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
)

// BenchmarkAppend appends invocation-sized logs from many goroutines across
// 8 functions to a real embedded NATS (the backbone's, with SyncAlways) and
// reports stored entries per second (Flush included) and the entries
// dropped.
func BenchmarkAppend(b *testing.B) {
	b.StopTimer()
	bb, err := backbone.Start(backbone.Config{DataDir: b.TempDir(), Port: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer bb.Close()
	s, err := New(Config{JS: bb.JetStream()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	line := []byte("START RequestId: 8d3f0c4e-2b1a-4f6e-9c7d-5a4b3c2d1e0f Version: $LATEST\n" +
		"hello from the function, a line of output\n" +
		"END RequestId: 8d3f0c4e-2b1a-4f6e-9c7d-5a4b3c2d1e0f\n" +
		"REPORT RequestId: 8d3f0c4e-2b1a-4f6e-9c7d-5a4b3c2d1e0f\tDuration: 0.52 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 12 MB\n")
	var n, failed atomic.Int64
	b.SetParallelism(8) // 16 appenders on 2 cores, like busy workers
	b.SetBytes(int64(len(line)))
	b.ResetTimer()
	cpu0 := cpuTime(b)
	start := time.Now()
	b.StartTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := s.Append(ctx, acct, fmt.Sprintf("fn-%d", i%8), fmt.Sprintf("req-%d", i), line); err != nil {
				failed.Add(1)
			}
		}
	})
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.Flush(fctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	el := time.Since(start)
	cpu := cpuTime(b) - cpu0
	stored := int64(b.N) - s.Dropped()
	b.ReportMetric(float64(stored)/el.Seconds(), "entries/s")
	b.ReportMetric(float64(s.Dropped()), "dropped")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/entry")
	if info, err := s.stream.Info(ctx); err == nil && info.State.Msgs > 0 {
		b.ReportMetric(float64(stored)/float64(info.State.Msgs), "entries/msg")
	}
	if f := failed.Load(); f != s.Dropped() {
		b.Errorf("%d Appends failed, Dropped says %d", f, s.Dropped())
	}
}

// cpuTime is the process's user+system CPU time so far (the embedded
// server included: it runs in this process).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAppendPaced appends one function's logs at a steady 2,000 per
// second (about the warm rate of `flint bench` where logs were lost) and
// reports the CPU spent per entry (appender and embedded server, fsync
// included) and how many entries share a message, for several BatchDelays
// (0: publish at once, one entry per message as before batching).
func BenchmarkAppendPaced(b *testing.B) {
	for _, d := range []time.Duration{-1, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, DefaultBatchDelay} {
		b.Run(fmt.Sprintf("delay=%v", max(d, 0)), func(b *testing.B) { benchPaced(b, d) })
	}
}

func benchPaced(b *testing.B, delay time.Duration) {
	b.StopTimer()
	bb, err := backbone.Start(backbone.Config{DataDir: b.TempDir(), Port: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer bb.Close()
	s, err := New(Config{JS: bb.JetStream(), BatchDelay: delay})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	line := []byte("START RequestId: r Version: $LATEST\nhello\nEND RequestId: r\nREPORT RequestId: r\tDuration: 0.52 ms\n")
	const every = 500 * time.Microsecond
	b.ResetTimer()
	cpu0 := cpuTime(b)
	start := time.Now()
	b.StartTimer()
	for i := range b.N {
		if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
			time.Sleep(d)
		}
		_ = s.Append(ctx, acct, "fn", "r", line)
	}
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.Flush(fctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/entry")
	b.ReportMetric(float64(s.Dropped()), "dropped")
	if info, err := s.stream.Info(ctx); err == nil && info.State.Msgs > 0 {
		b.ReportMetric(float64(int64(b.N)-s.Dropped())/float64(info.State.Msgs), "entries/msg")
	}
}
