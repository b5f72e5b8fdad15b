package server

import (
	"encoding/json"
	"net/http"
	"os"
	"runtime"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/placement"
	"github.com/flintdev/flint/internal/workermanager"
)

// serverStats is what GET /flint/v1/stats reports (?gc=true: after a
// forced garbage collection, only if the server runs with --stats-gc): the process's own
// footprint (so tests and operators can see it return to its baseline
// after a burst) and the worker manager's and placement's view.
type serverStats struct {
	Goroutines int                  `json:"goroutines"`
	OpenFDs    int                  `json:"openFDs"`
	HeapAlloc  uint64               `json:"heapAllocBytes"`
	HeapInuse  uint64               `json:"heapInuseBytes"`
	Sandboxes  workermanager.Stats  `json:"sandboxes"`
	Hosts      []placement.HostInfo `json:"hosts"`
	Driver     string               `json:"driver"`
	// SandboxInit says which binary the process driver starts as each
	// sandbox's init, and why.
	SandboxInit string   `json:"sandboxInit,omitempty"`
	Runtimes    []string `json:"runtimes"`
	NumGC       uint32   `json:"numGC"`
	// Backbone is the backbone's health: connection, JetStream, disk.
	Backbone backbone.Health `json:"backbone"`
	// LogsDropped counts function log entries not stored (the backbone
	// refused them, e.g. short of space, or did not acknowledge them).
	LogsDropped int64 `json:"logsDropped"`
	// Connections open on the API now, and refused past --max-connections.
	Connections struct {
		Open    int64 `json:"open"`
		Refused int64 `json:"refused"`
	} `json:"connections"`
}

func (c *components) statsHandler(w http.ResponseWriter, r *http.Request) {
	var ms runtime.MemStats
	switch gc := r.URL.Query().Get("gc"); {
	case gc == "true" && c.cfg.StatsGC:
		runtime.GC()
	case gc == "true":
		lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.InvalidParameterValue, "gc=true needs flint server --stats-gc"))
		return
	case gc != "" && gc != "false":
		lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.InvalidParameterValue, "gc must be true or false"))
		return
	}
	runtime.ReadMemStats(&ms)
	fds, _ := os.ReadDir("/proc/self/fd")
	st := serverStats{
		Goroutines: runtime.NumGoroutine(),
		OpenFDs:    len(fds),
		HeapAlloc:  ms.HeapAlloc,
		HeapInuse:  ms.HeapInuse,
		NumGC:      ms.NumGC,
		Sandboxes:  c.manager.Stats(),
		Hosts:      c.placement.Hosts(),
		Runtimes:   c.runtimes.Names(),
		Backbone:   c.bb.Health(),
	}
	st.LogsDropped = c.logs.Dropped()
	if c.conns != nil {
		st.Connections.Open, st.Connections.Refused = c.conns.Open(), c.conns.Refused()
	}
	if c.driver != nil {
		st.Driver = c.driver.Name()
	}
	st.SandboxInit = c.sandboxInit
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(st)
}
