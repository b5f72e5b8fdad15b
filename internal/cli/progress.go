package cli

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// progressMinBytes is the smallest upload that gets a progress bar in
// --progress auto mode.
const progressMinBytes = 4 << 20

// progressTransport draws a progress bar on w for every request body of
// at least min bytes as the transport reads it (sends it).
type progressTransport struct {
	base  http.RoundTripper
	w     io.Writer
	min   int64
	label string
}

func (t *progressTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength < t.min {
		return t.base.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.Body = &progressBody{rc: req.Body, bar: newBar(t.w, t.label, req.ContentLength)}
	return t.base.RoundTrip(r)
}

// progressBody counts what is read of a request body.
type progressBody struct {
	rc  io.ReadCloser
	bar *bar
}

func (p *progressBody) Read(b []byte) (int, error) {
	n, err := p.rc.Read(b)
	p.bar.add(int64(n))
	if err == io.EOF {
		p.bar.done()
	}
	return n, err
}

func (p *progressBody) Close() error {
	p.bar.done()
	return p.rc.Close()
}

// bar is one line redrawn in place (\r) at most every 100ms, ended with a
// newline when done.
type bar struct {
	w     io.Writer
	label string
	total int64
	start time.Time

	mu       sync.Mutex // guards the fields below
	n        int64
	drawn    time.Time
	finished bool
}

func newBar(w io.Writer, label string, total int64) *bar {
	b := &bar{w: w, label: label, total: total, start: time.Now()}
	b.draw()
	return b
}

func (b *bar) add(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += n
	if time.Since(b.drawn) >= 100*time.Millisecond {
		b.drawLocked()
	}
}

func (b *bar) done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	b.drawLocked()
	fmt.Fprintln(b.w)
}

func (b *bar) draw() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.drawLocked()
}

func (b *bar) drawLocked() {
	b.drawn = time.Now()
	frac := 1.0
	if b.total > 0 {
		frac = min(float64(b.n)/float64(b.total), 1)
	}
	const width = 30
	full := int(frac * width)
	rate := ""
	if s := time.Since(b.start).Seconds(); s > 0.05 {
		rate = fmt.Sprintf("  %.1f MiB/s", float64(b.n)/(1<<20)/s)
	}
	fmt.Fprintf(b.w, "\r%s [%s%s] %3d%%  %.1f/%.1f MiB%s ", b.label, strings.Repeat("=", full), strings.Repeat(" ", width-full),
		int(frac*100), float64(b.n)/(1<<20), float64(b.total)/(1<<20), rate)
}
