// Package metrics is Flint's Prometheus instrumentation: one Metrics value
// owns a private registry (nothing is registered globally or in init) and
// the instruments every component reports to, and serves them at
// GET /metrics in Prometheus' text format.
//
// Components never import this package for their own logic: the server
// wraps them in the decorators defined here (Invoker, Host, JetStream,
// HTTP) and hands Metrics the read-only sources it samples at each scrape
// (Sources). So instrumentation stays at the edges, in a handful of lines
// of wiring.
//
// Names follow Prometheus conventions: the flint_ prefix, _total for
// counters, _seconds and _bytes for units. Label values are bounded:
// function names and versions (bounded by the functions deployed), host
// ids, outcomes, operations and step names from fixed sets; never request
// ids.
//
// The warm invoke path costs one read-locked map lookup per invocation
// (the label children of a function version are resolved once and kept),
// a few atomic adds and two histogram observations, without allocating;
// BenchmarkInvokeObserved measures it.
package metrics

import (
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flintdev/flint/internal/sandbox"
)

// Outcomes of an invocation (label outcome of flint_invocations_total).
const (
	OutcomeSuccess       = "success"
	OutcomeFunctionError = "function_error"
	OutcomeTimeout       = "timeout"
	OutcomeThrottle      = "throttle"
	// OutcomeError is an invocation the platform failed to run (no
	// capacity, a sandbox that could not be created, a caller that gave
	// up): a 5xx to a synchronous caller.
	OutcomeError = "error"
)

// Cold-start steps (label step of flint_cold_start_step_seconds), as in
// invocation.ColdSteps.
const (
	StepPlacement     = "placement"
	StepCodeFetch     = "code_fetch"
	StepSandboxCreate = "sandbox_create"
	StepRuntimeInit   = "runtime_init"
)

// Config configures Metrics.
type Config struct {
	// Sources are sampled at each scrape; each is optional.
	Sources Sources
	// ScrapeTimeout bounds the sources that do I/O (default 2s).
	ScrapeTimeout time.Duration
	// ProcessMetrics adds the Go runtime's and the process's own metrics
	// (go_*, process_*).
	ProcessMetrics bool
	// Logger reports sources that fail (default: discard).
	Logger *slog.Logger
}

// Validate fills defaults; every Config is usable.
func (c *Config) Validate() error {
	if c.ScrapeTimeout <= 0 {
		c.ScrapeTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// durationBuckets spans a warm invoke of a no-op (well under a
// millisecond) to Lambda's 15-minute timeout.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}

// stepBuckets span the steps of a cold start and API calls.
var stepBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Metrics holds Flint's instruments. Create it with New; all methods are
// safe for concurrent use.
type Metrics struct {
	cfg Config
	reg *prometheus.Registry

	invocations  *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	initDuration *prometheus.HistogramVec
	concurrent   *prometheus.GaugeVec
	coldStarts   *prometheus.CounterVec
	memoryUsed   *prometheus.HistogramVec
	coldSteps    *prometheus.HistogramVec

	creations     *prometheus.CounterVec
	createSeconds *prometheus.HistogramVec
	createSteps   *prometheus.HistogramVec

	asyncRetries    *prometheus.CounterVec
	asyncDeliveries *prometheus.CounterVec

	apiRequests *prometheus.CounterVec
	apiLatency  *prometheus.HistogramVec

	publish *prometheus.HistogramVec

	mu  sync.RWMutex
	fns map[fnKey]*fnMetrics   // guarded by mu; entries are never changed once stored
	api map[apiKey]apiChildren // guarded by mu
}

type fnKey struct{ name, version string }

// fnMetrics are the label children of one function version, resolved once.
type fnMetrics struct {
	outcome      [5]prometheus.Counter // by outcomeIndex
	duration     prometheus.Observer
	initDuration prometheus.Observer
	concurrent   prometheus.Gauge
	coldStarts   prometheus.Counter
	memoryUsed   prometheus.Observer
	steps        [4]prometheus.Observer // placement, code fetch, sandbox create, runtime init
}

var outcomes = [5]string{OutcomeSuccess, OutcomeFunctionError, OutcomeTimeout, OutcomeThrottle, OutcomeError}

const (
	iSuccess = iota
	iFunctionError
	iTimeout
	iThrottle
	iError
)

// New returns Metrics with every instrument registered in its own
// registry.
func New(cfg Config) (*Metrics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	fv := []string{"function", "version"}
	m := &Metrics{
		cfg: cfg,
		reg: prometheus.NewRegistry(),
		fns: map[fnKey]*fnMetrics{},
		api: map[apiKey]apiChildren{},

		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_invocations_total",
			Help: "Invocations by function, version and outcome (success, function_error, timeout, throttle, error).",
		}, []string{"function", "version", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flint_invocation_duration_seconds", Buckets: durationBuckets,
			Help: "Duration of invocations that ran (REPORT's Duration), by function and version.",
		}, fv),
		initDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flint_invocation_init_duration_seconds", Buckets: durationBuckets,
			Help: "Init duration of cold starts (REPORT's Init Duration), by function and version.",
		}, fv),
		concurrent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flint_concurrent_executions",
			Help: "Invocations running now, by function and version.",
		}, fv),
		coldStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_cold_starts_total",
			Help: "Invocations that started a new sandbox, by function and version.",
		}, fv),
		memoryUsed: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flint_invocation_memory_used_bytes",
			Buckets: prometheus.ExponentialBuckets(4<<20, 2, 12), // 4 MiB .. 8 GiB
			Help:    "Peak memory of the sandbox at the end of each invocation (REPORT's Max Memory Used).",
		}, fv),
		coldSteps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flint_cold_start_step_seconds", Buckets: stepBuckets,
			Help: "Time of each step of cold starts (placement, code_fetch, sandbox_create, runtime_init), by function and version.",
		}, []string{"function", "version", "step"}),

		creations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_sandbox_creations_total",
			Help: "Sandboxes created on each host, by result (ok, error); provisioned ones included.",
		}, []string{"host", "result"}),
		createSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flint_sandbox_create_seconds", Buckets: stepBuckets,
			Help: "Time a host took to create a sandbox (code fetch and driver create; the runtime's init runs after).",
		}, []string{"host"}),
		createSteps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flint_sandbox_create_step_seconds", Buckets: stepBuckets,
			Help: "Time of each named step of the sandbox driver's create (cgroup, start, wait-prepared, send-claim, exec...; init/* ran inside the sandbox init), by host.",
		}, []string{"host", "step"}),

		asyncRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_async_retries_total",
			Help: "Asynchronous invocation attempts scheduled again, by function and reason (function_error, throttle).",
		}, []string{"function", "reason"}),
		asyncDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_async_deliveries_total",
			Help: "Records sent to destinations and dead-letter queues, by function, destination (on_success, on_failure, dlq) and result (ok, error).",
		}, []string{"function", "destination", "result"}),

		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_api_requests_total",
			Help: "HTTP requests to the server by operation and status code.",
		}, []string{"operation", "code"}),
		apiLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flint_api_request_duration_seconds", Buckets: durationBuckets,
			Help: "Time to answer HTTP requests, by operation (a followed log stream counts its whole life).",
		}, []string{"operation"}),

		publish: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flint_backbone_publish_seconds", Buckets: stepBuckets,
			Help: "Time until the backbone acknowledged a stored message, by component.",
		}, []string{"component"}),
	}
	m.reg.MustRegister(m.invocations, m.duration, m.initDuration, m.concurrent, m.coldStarts, m.memoryUsed,
		m.coldSteps, m.creations, m.createSeconds, m.createSteps, m.asyncRetries, m.asyncDeliveries, m.apiRequests,
		m.apiLatency, m.publish, &sampler{m: m})
	if cfg.ProcessMetrics {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m, nil
}

// Registry is the private registry (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus' exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.cfg.Logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// function returns the label children of a function version, creating
// them on first use.
func (m *Metrics) function(name, version string) *fnMetrics {
	k := fnKey{name, version}
	m.mu.RLock()
	f := m.fns[k]
	m.mu.RUnlock()
	if f != nil {
		return f
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if f = m.fns[k]; f != nil {
		return f
	}
	f = &fnMetrics{
		duration:     m.duration.WithLabelValues(name, version),
		initDuration: m.initDuration.WithLabelValues(name, version),
		concurrent:   m.concurrent.WithLabelValues(name, version),
		coldStarts:   m.coldStarts.WithLabelValues(name, version),
		memoryUsed:   m.memoryUsed.WithLabelValues(name, version),
	}
	for i, o := range outcomes {
		f.outcome[i] = m.invocations.WithLabelValues(name, version, o)
	}
	for i, s := range []string{StepPlacement, StepCodeFetch, StepSandboxCreate, StepRuntimeInit} {
		f.steps[i] = m.coldSteps.WithLabelValues(name, version, s)
	}
	m.fns[k] = f
	return f
}

// AsyncRetry counts an asynchronous event scheduled for another attempt;
// reason is "function_error" or "throttle".
func (m *Metrics) AsyncRetry(function, reason string) {
	m.asyncRetries.WithLabelValues(function, reason).Inc()
}

// AsyncDelivery counts a record sent (or not) to a destination: "dlq",
// "on_success" or "on_failure".
func (m *Metrics) AsyncDelivery(function, destination string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.asyncDeliveries.WithLabelValues(function, destination, result).Inc()
}

// SandboxCreated counts a creation on host, its time and the driver's
// named steps (nil when the driver does not measure them).
func (m *Metrics) SandboxCreated(host string, took time.Duration, steps []sandbox.Step, err error) {
	if err != nil {
		m.creations.WithLabelValues(host, "error").Inc()
		return
	}
	m.creations.WithLabelValues(host, "ok").Inc()
	m.createSeconds.WithLabelValues(host).Observe(took.Seconds())
	for _, st := range steps {
		m.createSteps.WithLabelValues(host, st.Name).Observe(st.Duration.Seconds())
	}
}

// Published observes one acknowledged publish of component.
func (m *Metrics) Published(component string, took time.Duration) {
	m.publish.WithLabelValues(component).Observe(took.Seconds())
}
