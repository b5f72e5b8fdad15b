package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sources are read at each scrape, so that figures which already live in a
// component (sandbox counts, host capacity, queue depth, stream sizes) are
// never counted twice. Each is optional. They run on the scraping
// goroutine with a context bounded by Config.ScrapeTimeout; an error drops
// that source's series from the scrape and is logged.
type Sources struct {
	// Sandboxes counts the Worker Manager's sandboxes by state ("idle",
	// "busy", "creating") and how many of them are provisioned.
	Sandboxes func() (byState map[string]int, provisioned int)
	// Hosts reports every worker host.
	Hosts func() []Host
	// Async reports the asynchronous invocation queue.
	Async func(ctx context.Context) (Queue, error)
	// Streams reports the backbone's storage, one entry per stream.
	Streams func(ctx context.Context) ([]Stream, error)
	// LogsDropped is the number of log entries the log store dropped.
	LogsDropped func() int64
	// RecordsLost is the number of invocation records not stored.
	RecordsLost func() int64
}

// Host is one worker host's capacity and use.
type Host struct {
	ID           string
	Sandboxes    int
	MaxSandboxes int
	// MemoryMB is what the host offers, MemoryReservedMB the sum of its
	// sandboxes' memory sizes.
	MemoryMB, MemoryReservedMB int
	// MemoryUsedBytes is the memory the host's sandboxes use now; -1 when
	// unknown (e.g. a remote host that does not report it).
	MemoryUsedBytes int64
}

// Queue is the state of the asynchronous invocation queue.
type Queue struct {
	// Depth counts the events waiting or being run.
	Depth uint64
	// Oldest is when the oldest of them was stored (zero when empty).
	Oldest time.Time
}

// Stream is one backbone stream's storage.
type Stream struct {
	Name     string
	Bytes    uint64
	Messages uint64
}

var (
	descSandboxes = prometheus.NewDesc("flint_sandboxes",
		"Sandboxes the Worker Manager holds, by state (idle, busy, creating).", []string{"state"}, nil)
	descProvisioned = prometheus.NewDesc("flint_sandboxes_provisioned",
		"Sandboxes held for provisioned concurrency (also counted in flint_sandboxes).", nil, nil)
	descHostSandboxes = prometheus.NewDesc("flint_host_sandboxes",
		"Sandboxes on each worker host.", []string{"host"}, nil)
	descHostMaxSandboxes = prometheus.NewDesc("flint_host_sandboxes_max",
		"Sandboxes each worker host may hold (0: no limit).", []string{"host"}, nil)
	descHostMemory = prometheus.NewDesc("flint_host_memory_capacity_bytes",
		"Memory each worker host offers to sandboxes.", []string{"host"}, nil)
	descHostReserved = prometheus.NewDesc("flint_host_memory_reserved_bytes",
		"Memory reserved on each worker host: the sum of its sandboxes' memory sizes.", []string{"host"}, nil)
	descHostUsed = prometheus.NewDesc("flint_host_memory_used_bytes",
		"Memory the sandboxes of each worker host use now (their cgroups' usage).", []string{"host"}, nil)
	descQueueDepth = prometheus.NewDesc("flint_async_queue_depth",
		"Asynchronous invocations accepted and not yet finished.", nil, nil)
	descQueueAge = prometheus.NewDesc("flint_async_oldest_event_age_seconds",
		"Age of the oldest asynchronous invocation still queued (0 when none).", nil, nil)
	descStreamBytes = prometheus.NewDesc("flint_backbone_storage_bytes",
		"Bytes stored in each backbone stream (key-value buckets included).", []string{"stream"}, nil)
	descStreamMsgs = prometheus.NewDesc("flint_backbone_messages",
		"Messages stored in each backbone stream.", []string{"stream"}, nil)
	descLogsDropped = prometheus.NewDesc("flint_logs_dropped_total",
		"Log entries the log store could not store.", nil, nil)
	descRecordsLost = prometheus.NewDesc("flint_invocation_records_lost_total",
		"Invocation records that could not be stored.", nil, nil)
)

// sampler turns Sources into metrics at scrape time.
type sampler struct{ m *Metrics }

func (s *sampler) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSandboxes, descProvisioned, descHostSandboxes, descHostMaxSandboxes,
		descHostMemory, descHostReserved, descHostUsed, descQueueDepth, descQueueAge, descStreamBytes,
		descStreamMsgs, descLogsDropped, descRecordsLost} {
		ch <- d
	}
}

func (s *sampler) Collect(ch chan<- prometheus.Metric) {
	src := s.m.cfg.Sources
	log := s.m.cfg.Logger
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if src.Sandboxes != nil {
		byState, prov := src.Sandboxes()
		for _, st := range []string{"idle", "busy", "creating"} {
			gauge(descSandboxes, float64(byState[st]), st)
		}
		gauge(descProvisioned, float64(prov))
	}
	if src.Hosts != nil {
		for _, h := range src.Hosts() {
			gauge(descHostSandboxes, float64(h.Sandboxes), h.ID)
			gauge(descHostMaxSandboxes, float64(h.MaxSandboxes), h.ID)
			gauge(descHostMemory, float64(h.MemoryMB)*(1<<20), h.ID)
			gauge(descHostReserved, float64(h.MemoryReservedMB)*(1<<20), h.ID)
			if h.MemoryUsedBytes >= 0 {
				gauge(descHostUsed, float64(h.MemoryUsedBytes), h.ID)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.m.cfg.ScrapeTimeout)
	defer cancel()
	if src.Async != nil {
		if q, err := src.Async(ctx); err != nil {
			log.Warn("metrics: async queue", "err", err)
		} else {
			gauge(descQueueDepth, float64(q.Depth))
			age := 0.0
			if q.Depth > 0 && !q.Oldest.IsZero() {
				age = max(time.Since(q.Oldest).Seconds(), 0)
			}
			gauge(descQueueAge, age)
		}
	}
	if src.Streams != nil {
		if ss, err := src.Streams(ctx); err != nil {
			log.Warn("metrics: backbone streams", "err", err)
		} else {
			for _, st := range ss {
				gauge(descStreamBytes, float64(st.Bytes), st.Name)
				gauge(descStreamMsgs, float64(st.Messages), st.Name)
			}
		}
	}
	if src.LogsDropped != nil {
		ch <- prometheus.MustNewConstMetric(descLogsDropped, prometheus.CounterValue, float64(src.LogsDropped()))
	}
	if src.RecordsLost != nil {
		ch <- prometheus.MustNewConstMetric(descRecordsLost, prometheus.CounterValue, float64(src.RecordsLost()))
	}
}
