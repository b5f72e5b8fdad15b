package worker

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
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

// moveTo appends everything written since the last moveTo to f as the
// function's output (ending it with a newline) and empties l.
func (l *logBuffer) moveTo(f *frame) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f.buf == nil {
		f.buf = make([]byte, 0, l.buf.Len()+frameLines)
	}
	if l.dropped > 0 {
		f.buf = append(f.buf, l.buf.Bytes()...)
		f.buf = fmt.Appendf(f.buf, "\n[flint: %d bytes of output dropped]\n", l.dropped)
	} else {
		f.output(l.buf.Bytes())
	}
	l.buf.Reset()
	l.dropped = 0
}

// frame builds one invocation's log the way Lambda frames it. It appends
// with strconv rather than fmt: it runs on every invocation.
type frame struct{ buf []byte }

// frameLines is about what START, END and REPORT take with a 36-byte
// request ID.
const frameLines = 288

// Bytes returns the log framed so far.
func (f *frame) Bytes() []byte { return f.buf }

func (f *frame) start(id, version string) {
	f.buf = append(f.buf, "START RequestId: "...)
	f.buf = append(f.buf, id...)
	f.buf = append(f.buf, " Version: "...)
	f.buf = append(f.buf, version...)
	f.buf = append(f.buf, '\n')
}

// output appends the function's output, ending it with a newline.
func (f *frame) output(b []byte) {
	f.buf = append(f.buf, b...)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		f.buf = append(f.buf, '\n')
	}
}

// line appends s as a line of its own.
func (f *frame) line(s string) {
	f.buf = append(f.buf, s...)
	f.buf = append(f.buf, '\n')
}

func (f *frame) end(id string) {
	f.buf = append(f.buf, "END RequestId: "...)
	f.buf = append(f.buf, id...)
	f.buf = append(f.buf, '\n')
}

// report writes Lambda's REPORT line; initDur 0 leaves out Init Duration.
func (f *frame) report(id string, dur time.Duration, memMB int, maxMemBytes uint64, initDur time.Duration) {
	b := append(f.buf, "REPORT RequestId: "...)
	b = append(b, id...)
	b = append(b, "\tDuration: "...)
	b = strconv.AppendFloat(b, ms(dur), 'f', 2, 64)
	b = append(b, " ms\tBilled Duration: "...)
	b = strconv.AppendInt(b, billedMs(dur), 10)
	b = append(b, " ms\tMemory Size: "...)
	b = strconv.AppendInt(b, int64(memMB), 10)
	b = append(b, " MB\tMax Memory Used: "...)
	b = strconv.AppendUint(b, (maxMemBytes+(1<<20)-1)>>20, 10)
	b = append(b, " MB\t"...)
	if initDur > 0 {
		b = append(b, "Init Duration: "...)
		b = strconv.AppendFloat(b, ms(initDur), 'f', 2, 64)
		b = append(b, " ms\t"...)
	}
	f.buf = append(b, '\n')
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
