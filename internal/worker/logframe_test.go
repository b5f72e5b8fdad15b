package worker

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestFrameLines checks the framing lines byte for byte against Lambda's
// formats, written out with fmt, over durations that round differently.
func TestFrameLines(t *testing.T) {
	const id = "8f5e2b1c-3d4a-4e6f-9a0b-1c2d3e4f5a6b"
	for _, tc := range []struct {
		dur, init time.Duration
		mem       uint64
	}{
		{dur: 0, mem: 0},
		{dur: 4999, mem: 1},
		{dur: 5000, mem: 1 << 20},
		{dur: 1234567, mem: 1<<20 + 1, init: 98765432},
		{dur: 999999999, mem: 512 << 20, init: 1},
		{dur: 3*time.Second + 5*time.Millisecond, mem: 10<<20 - 1, init: 12345},
	} {
		f := &frame{}
		f.start(id, "$LATEST")
		f.output([]byte("hello"))
		f.line("a platform line")
		f.end(id)
		f.report(id, tc.dur, 1024, tc.mem, tc.init)
		var want strings.Builder
		fmt.Fprintf(&want, "START RequestId: %s Version: %s\nhello\na platform line\nEND RequestId: %s\n", id, "$LATEST", id)
		fmt.Fprintf(&want, "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\tMax Memory Used: %d MB\t",
			id, float64(tc.dur)/1e6, billedMs(tc.dur), 1024, (tc.mem+(1<<20)-1)>>20)
		if tc.init > 0 {
			fmt.Fprintf(&want, "Init Duration: %.2f ms\t", float64(tc.init)/1e6)
		}
		want.WriteByte('\n')
		if got := string(f.Bytes()); got != want.String() {
			t.Errorf("dur %v init %v mem %d:\n got %q\nwant %q", tc.dur, tc.init, tc.mem, got, want.String())
		}
	}
}

// TestLogBufferMoveTo checks that moveTo hands over the output once, ends
// it with a newline and notes dropped bytes.
func TestLogBufferMoveTo(t *testing.T) {
	l := newLogBuffer()
	l.Write([]byte("one\ntwo"))
	f := &frame{}
	l.moveTo(f)
	if got := string(f.Bytes()); got != "one\ntwo\n" {
		t.Fatalf("first move: %q", got)
	}
	l.moveTo(f)
	if got := string(f.Bytes()); got != "one\ntwo\n" {
		t.Fatalf("second move added %q", got)
	}
	l.Write(make([]byte, maxBufferedLog+10))
	g := &frame{}
	l.moveTo(g)
	if want := "\n[flint: 10 bytes of output dropped]\n"; !strings.HasSuffix(string(g.Bytes()), want) || len(g.Bytes()) != maxBufferedLog+len(want) {
		t.Fatalf("dropped note: len %d, tail %q", len(g.Bytes()), g.Bytes()[len(g.Bytes())-40:])
	}
}
