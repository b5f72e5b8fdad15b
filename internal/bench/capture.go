package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// creation is what the in-process server logged about one sandbox
// creation: the worker manager's whole creation time (placement, code,
// driver) and the process driver's named steps.
type creation struct {
	id    string
	took  time.Duration
	steps []step
}

type step struct {
	name string
	d    time.Duration
}

// captureHandler is the in-process server's slog handler: it forwards
// records at or above the forward level to inner, and, while capturing,
// keeps the "sandbox created" records of the worker manager and the
// process driver so the cold scenario can break a cold start into steps
// without any hook in those packages. Safe for concurrent use.
type captureHandler struct {
	inner   slog.Handler
	forward slog.Level
	attrs   []slog.Attr
	st      *captureState
}

type captureState struct {
	on     atomic.Bool // capturing, and debug records enabled
	mu     sync.Mutex
	byID   map[string]*creation // guarded by mu
	counts map[string]int       // guarded by mu: forwarded-level records by message
	order  []string             // guarded by mu: sandbox ids as the manager reported them
}

func newCaptureHandler(inner slog.Handler, forward slog.Level) *captureHandler {
	return &captureHandler{inner: inner, forward: forward, st: &captureState{byID: map[string]*creation{}, counts: map[string]int{}}}
}

// setCapturing turns capturing (and with it debug records) on or off.
func (h *captureHandler) setCapturing(on bool) {
	h.st.on.Store(on)
}

// take returns and forgets the creations the manager reported since the
// last take, oldest first.
func (h *captureHandler) take() []*creation {
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	var out []*creation
	for _, id := range h.st.order {
		out = append(out, h.st.byID[id])
		delete(h.st.byID, id)
	}
	h.st.order = nil
	return out
}

func (h *captureHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if l >= h.forward {
		return true
	}
	return h.st.on.Load()
}

func (h *captureHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "sandbox created" {
		h.record(r)
	}
	if r.Level >= h.forward {
		h.st.mu.Lock()
		h.st.counts[r.Message]++
		n := h.st.counts[r.Message]
		h.st.mu.Unlock()
		if n <= maxRepeats {
			return h.inner.Handle(ctx, r)
		}
	}
	return nil
}

// maxRepeats is how many records with the same message are forwarded;
// the rest are only counted (a flood of one warning would bury the table).
const maxRepeats = 3

// repeated returns "N× message" for every warning or error message the
// server logged more than maxRepeats times.
func (h *captureHandler) repeated() []string {
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	var out []string
	for msg, n := range h.st.counts {
		if n > maxRepeats {
			out = append(out, fmt.Sprintf("server logged %d× %q (first %d shown on stderr)", n, msg, maxRepeats))
		}
	}
	sort.Strings(out)
	return out
}

func (h *captureHandler) record(r slog.Record) {
	var component, id string
	var took time.Duration
	var steps []step
	visit := func(a slog.Attr) bool {
		switch {
		case a.Key == "component":
			component = a.Value.String()
		case a.Key == "sandbox":
			id = a.Value.String()
		case a.Key == "took" && a.Value.Kind() == slog.KindDuration:
			took = a.Value.Duration()
		case a.Value.Kind() == slog.KindDuration:
			steps = append(steps, step{a.Key, a.Value.Duration()})
		}
		return true
	}
	for _, a := range h.attrs {
		visit(a)
	}
	r.Attrs(visit)
	if id == "" {
		return
	}
	if !h.st.on.Load() {
		return
	}
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	c := h.st.byID[id]
	if c == nil {
		c = &creation{id: id}
		h.st.byID[id] = c
	}
	switch component {
	case "sandbox":
		c.steps = steps
	case "workermanager":
		c.took = took
		h.st.order = append(h.st.order, id)
	}
}

func (h *captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	c.inner = h.inner.WithAttrs(as)
	return &c
}

func (h *captureHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}
