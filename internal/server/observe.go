package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/asyncq"
	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/console"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/metrics"
	"github.com/flintdev/flint/internal/records"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/worker"
	"github.com/flintdev/flint/internal/workermanager"
)

// observedManager is the Worker Manager as the frontend and the async
// service see it: every invocation is counted in the metrics and leaves a
// record in the log store. The manager's other methods (retire,
// concurrency) pass through.
type observedManager struct {
	*workermanager.Manager
	metrics *metrics.Metrics
	records *records.Writer // nil: no records
}

func (o *observedManager) Invoke(ctx context.Context, fn *metadata.Function, req invocation.Request) (invocation.Result, error) {
	start := time.Now()
	obs := o.metrics.Start(fn.Name, fn.Version)
	res, err := o.Manager.Invoke(ctx, fn, req)
	o.end(obs, start, fn, &res, err)
	return res, err
}

// InvokeStream observes a streamed invocation as Invoke does.
func (o *observedManager) InvokeStream(ctx context.Context, fn *metadata.Function, req invocation.Request, stream invocation.Stream) (invocation.Result, error) {
	start := time.Now()
	obs := o.metrics.Start(fn.Name, fn.Version)
	res, err := o.Manager.InvokeStream(ctx, fn, req, stream)
	o.end(obs, start, fn, &res, err)
	return res, err
}

func (o *observedManager) end(obs metrics.Invocation, start time.Time, fn *metadata.Function, res *invocation.Result, err error) {
	obs.End(res, err)
	if err == nil && o.records != nil {
		rec := records.New(res, start, fn.MemorySize, metrics.Outcome(res))
		o.records.Write(fn.Account, fn.Name, &rec)
	}
}

// observedHost counts and times the sandboxes a host creates.
type observedHost struct {
	workermanager.Host
	id      string
	metrics *metrics.Metrics
}

func (h observedHost) CreateSandbox(ctx context.Context, fn *metadata.Function) (workermanager.Sandbox, error) {
	t0 := time.Now()
	sb, err := h.Host.CreateSandbox(ctx, fn)
	var steps []sandbox.Step
	if st, ok := sb.(sandbox.StepTimer); ok && err == nil {
		steps = st.Timings()
	}
	h.metrics.SandboxCreated(h.id, time.Since(t0), steps, err)
	return sb, err
}

// metricsPath serves Prometheus metrics: server-wide, so root only when
// signatures are required, or to the bearer of the metrics token
// (Config.MetricsTokenFile).
const metricsPath = "/metrics"

// readMetricsToken reads the metrics bearer token from path ("" none).
func readMetricsToken(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: --metrics-token-file: %w", err)
	}
	token := bytes.TrimSpace(b)
	if len(token) < 16 {
		return nil, fmt.Errorf("server: --metrics-token-file %s: the token must be at least 16 characters (for example: openssl rand -hex 24 > %s)", path, path)
	}
	return token, nil
}

// bearerIs reports whether r carries "Authorization: Bearer <token>",
// compared in constant time.
func bearerIs(r *http.Request, token []byte) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), token) == 1
}

// observeRoutes adds the observability endpoints: GET /metrics, the
// invocation records and the web console.
func (c *components) observeRoutes(mux *http.ServeMux) {
	mux.Handle("GET "+metricsPath, c.metrics.Handler())
	mux.Handle("GET /flint/v1/functions/{name}/invocations", records.Handler(c.logs, func(r *http.Request) string {
		return auth.AccountOf(r.Context(), c.cfg.Account)
	}, nil))
	mux.Handle("GET "+console.Prefix, console.Handler())
	mux.Handle("GET /console", http.RedirectHandler(console.Prefix, http.StatusFound))
}

// metricSources are the figures /metrics samples at each scrape.
func (c *components) metricSources() metrics.Sources {
	return metrics.Sources{
		Sandboxes: func() (map[string]int, int) {
			st := c.manager.Stats()
			prov := 0
			for _, p := range st.Pools {
				prov += p.Provisioned
			}
			return map[string]int{"idle": st.Idle, "busy": st.Busy, "creating": st.Creating}, prov
		},
		Hosts: func() []metrics.Host {
			var out []metrics.Host
			var local worker.Status // zero on a node without the worker role
			if c.worker != nil {
				local = c.worker.Status()
			}
			for _, h := range c.placement.Hosts() {
				mh := metrics.Host{ID: h.HostID, MemoryMB: h.MemoryMB, MaxSandboxes: h.MaxSandboxes,
					Sandboxes: h.Reservations, MemoryReservedMB: h.ReservedMB, MemoryUsedBytes: -1}
				if c.worker != nil && h.HostID == local.HostID {
					mh.Sandboxes, mh.MemoryReservedMB = local.Sandboxes, local.MemoryUsedMB
					mh.MemoryUsedBytes = cgroupMemoryUsage(c.cgroupParent)
				}
				out = append(out, mh)
			}
			return out
		},
		Async: func(ctx context.Context) (metrics.Queue, error) {
			st, err := c.bb.JetStream().Stream(ctx, asyncq.StreamName)
			if err != nil {
				return metrics.Queue{}, err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return metrics.Queue{}, err
			}
			return metrics.Queue{Depth: info.State.Msgs, Oldest: info.State.FirstTime}, nil
		},
		Streams: func(ctx context.Context) ([]metrics.Stream, error) {
			var out []metrics.Stream
			l := c.bb.JetStream().ListStreams(ctx)
			for info := range l.Info() {
				out = append(out, metrics.Stream{Name: info.Config.Name, Bytes: info.State.Bytes, Messages: info.State.Msgs})
			}
			if err := l.Err(); err != nil && err != jetstream.ErrEndOfData {
				return nil, err
			}
			return out, nil
		},
		LogsDropped: func() int64 { return c.logs.Dropped() },
		RecordsLost: func() int64 { return c.observed.records.Lost() },
	}
}

// cgroupMemoryUsage reads the memory the sandboxes under the cgroup parent
// use now (v1 memory.usage_in_bytes, v2 memory.current: page cache
// included, as the limits count it), -1 when it cannot be read.
func cgroupMemoryUsage(parent string) int64 {
	if parent == "" {
		return -1 // never the root cgroup's
	}
	for _, p := range []string{
		filepath.Join("/sys/fs/cgroup/memory", parent, "memory.usage_in_bytes"),
		filepath.Join("/sys/fs/cgroup", parent, "memory.current"),
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return n
		}
	}
	return -1
}
