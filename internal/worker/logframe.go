package worker

import (
	"bytes"
	"fmt"
	"math"
	"sync"
	"time"
)

// maxBufferedLog bounds the function output kept between two takes; the
// excess is dropped with a note, so a chatty function cannot exhaust the
// worker's memory.
const maxBufferedLog = 4 << 20

// logBuffer is a sandbox's Spec.Output: it collects the runtime's output
// until the worker frames it into an invocation's log. Safe for concurrent
// use.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer // guarded by mu
	dropped int          // guarded by mu: bytes dropped since the last take
}

func newLogBuffer() *logBuffer { return &logBuffer{} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	room := maxBufferedLog - l.buf.Len()
	if room < len(p) {
		if room > 0 {
			l.buf.Write(p[:room])
		}
		l.dropped += len(p) - max(room, 0)
		return len(p), nil
	}
	l.buf.Write(p)
	return len(p), nil
}

// take returns everything written since the last take.
func (l *logBuffer) take() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := bytes.Clone(l.buf.Bytes())
	if l.dropped > 0 {
		out = fmt.Appendf(out, "\n[flint: %d bytes of output dropped]\n", l.dropped)
	}
	l.buf.Reset()
	l.dropped = 0
	return out
}

// frame builds one invocation's log the way Lambda frames it.
type frame struct{ bytes.Buffer }

func (f *frame) start(id, version string) {
	fmt.Fprintf(f, "START RequestId: %s Version: %s\n", id, version)
}

// output appends the function's output, ending it with a newline.
func (f *frame) output(b []byte) {
	f.Write(b)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		f.WriteByte('\n')
	}
}

func (f *frame) line(format string, args ...any) {
	fmt.Fprintf(f, format, args...)
	f.WriteByte('\n')
}

func (f *frame) end(id string) { fmt.Fprintf(f, "END RequestId: %s\n", id) }

// report writes Lambda's REPORT line; initDur 0 leaves out Init Duration.
func (f *frame) report(id string, dur time.Duration, memMB int, maxMemBytes uint64, initDur time.Duration) {
	fmt.Fprintf(f, "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\tMax Memory Used: %d MB\t",
		id, ms(dur), billedMs(dur), memMB, (maxMemBytes+(1<<20)-1)>>20)
	if initDur > 0 {
		fmt.Fprintf(f, "Init Duration: %.2f ms\t", ms(initDur))
	}
	f.WriteByte('\n')
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// billedMs rounds up to the next millisecond (at least 1), as Lambda bills.
func billedMs(d time.Duration) int64 {
	return max(1, int64(math.Ceil(ms(d))))
}

// timestamp is Lambda's log time format.
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// seconds formats a timeout as Lambda does ("3.00").
func seconds(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
