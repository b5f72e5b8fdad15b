package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/flintdev/flint/internal/asyncq"
	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/codestore"
	"github.com/flintdev/flint/internal/frontend"
	"github.com/flintdev/flint/internal/hostproxy"
	"github.com/flintdev/flint/internal/leases"
	"github.com/flintdev/flint/internal/logstore"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/placement"
	"github.com/flintdev/flint/internal/runtimes"
	"github.com/flintdev/flint/internal/sandbox/process"
	"github.com/flintdev/flint/internal/worker"
	"github.com/flintdev/flint/internal/workermanager"
)

// components is every part of a running all-in-one server.
type components struct {
	cfg       Config
	bb        *backbone.Backbone
	functions *metadata.Store
	code      *codestore.Store
	logs      *logstore.Store
	runtimes  *runtimes.Catalog
	driver    *process.Driver
	worker    *worker.Worker
	placement *placement.Service
	hostProxy *hostproxy.Server // nil unless clustered with the worker role
	manager   *workermanager.Manager
	async     *asyncq.Service
	frontend  *frontend.Handler

	closers []func(ctx context.Context) // run in reverse order by close
}

// start builds the components in dependency order. On error everything
// started so far is stopped again.
func start(ctx context.Context, cfg Config) (_ *components, err error) {
	c := &components{cfg: cfg}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	log := cfg.Logger
	data := cfg.DataDir

	if c.bb, err = backbone.Start(backbone.Config{URL: cfg.NATSURL, DataDir: data, Port: cfg.NATSPort, Name: "flint-server"}); err != nil {
		return nil, err
	}
	c.onClose(func(context.Context) { c.bb.Close() })
	js := c.bb.JetStream()

	if c.functions, err = metadata.NewStore(ctx, js, metadata.WithRegion(cfg.Region), metadata.WithLogger(log.With("component", "metadata"))); err != nil {
		return nil, fmt.Errorf("server: metadata: %w", err)
	}
	c.onClose(func(ctx context.Context) { c.functions.Close(ctx) })
	if c.code, err = codestore.New(codestore.Config{JS: js, Logger: log.With("component", "codestore")}); err != nil {
		return nil, fmt.Errorf("server: code store: %w", err)
	}
	if c.logs, err = logstore.New(logstore.Config{JS: js, Logger: log.With("component", "logstore")}); err != nil {
		return nil, fmt.Errorf("server: log store: %w", err)
	}
	c.onClose(func(ctx context.Context) { c.logs.Close(ctx) })

	if c.runtimes, err = runtimes.New(runtimes.Config{AssetDir: filepath.Join(data, "runtimes")}); err != nil {
		return nil, fmt.Errorf("server: runtimes: %w", err)
	}
	hostID, instance := cfg.HostID, newInstance()
	if cfg.clustered() {
		// A second live node with this id would make placement send one
		// host's sandboxes to the other: refuse before heartbeating.
		if err := checkHostIDFree(c.bb.Conn(), hostID, instance, 3*placement.DefaultHeartbeatInterval); err != nil {
			return nil, err
		}
	}
	var workerAddr string
	if cfg.has(placement.RoleWorker) {
		if workerAddr, err = c.startWorker(ctx, hostID); err != nil {
			return nil, err
		}
	}

	if c.placement, err = placement.New(placement.Config{Logger: log.With("component", "placement")}); err != nil {
		return nil, fmt.Errorf("server: placement: %w", err)
	}
	stopSub, err := c.placement.Subscribe(c.bb.Conn())
	if err != nil {
		return nil, fmt.Errorf("server: placement heartbeats: %w", err)
	}
	c.onClose(func(context.Context) { stopSub() })
	status := func() placement.HostStatus {
		hs := placement.HostStatus{HostID: hostID, Roles: cfg.Roles, Instance: instance, Addr: workerAddr, Shared: cfg.clustered()}
		if c.worker != nil {
			st := c.worker.Status()
			hs.MemoryMB, hs.MaxSandboxes, hs.CachedCode = st.MemoryMB, st.MaxSandboxes, st.CachedCode
			hs.Sandboxes, hs.UsedMB = st.Sandboxes, st.MemoryUsedMB
		}
		return hs
	}
	// The first heartbeat goes in directly, so the host is known before
	// the first request; later ones travel over NATS like a remote
	// worker's would.
	if err := c.placement.Heartbeat(status()); err != nil {
		return nil, fmt.Errorf("server: register host: %w", err)
	}
	stopBeats := placement.StartHeartbeats(c.bb.Conn(), placement.DefaultHeartbeatInterval, func() placement.HostStatus {
		st := status()
		// This process's own placement hears this host directly too, so
		// a slow backbone never makes the local host look stale.
		_ = c.placement.Heartbeat(st)
		return st
	})
	c.onClose(func(context.Context) { stopBeats() })

	hosts := &hostSet{
		self: hostID, owner: hostID + "/" + instance, placement: c.placement,
		log: log.With("component", "hosts"), remotes: map[string]*remote{},
	}
	if c.worker != nil {
		hosts.local = workerHost{c.worker}
	}
	mcfg := workermanager.Config{
		Placement: c.placement,
		Hosts:     hosts.lookup,
		KeepAlive: cfg.KeepAlive,
		Logger:    log.With("component", "workermanager"),
	}
	if cfg.clustered() {
		// Reserved concurrency holds across every node that admits
		// invocations.
		if mcfg.Leases, err = leases.New(ctx, leases.Config{JS: js, Logger: log.With("component", "leases")}); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	if c.manager, err = workermanager.New(mcfg); err != nil {
		return nil, fmt.Errorf("server: worker manager: %w", err)
	}
	c.onClose(func(ctx context.Context) { c.manager.Close(ctx) })
	if cfg.clustered() {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(placement.DefaultHeartbeatInterval)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					hosts.sync(sctx, c.manager)
					cancel()
				}
			}
		}()
		c.onClose(func(context.Context) { close(stop); <-done })
	}
	// Reserved concurrency reaches this node's manager through the store,
	// whichever node's API set it.
	stopWatch, err := c.functions.WatchReservedConcurrency(func(account, name string, n int, set bool) {
		if set {
			c.manager.SetReservedConcurrency(account, name, n)
		} else {
			c.manager.ClearReservedConcurrency(account, name)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	c.onClose(func(context.Context) { stopWatch() })

	if c.async, err = asyncq.New(asyncq.Config{
		JetStream:      js,
		Invoker:        c.manager,
		Functions:      c.functions,
		DefaultAccount: cfg.Account,
		Logger:         log.With("component", "asyncq"),

		RetryDelays:        cfg.Async.RetryDelays,
		ThrottleBackoffMin: cfg.Async.ThrottleBackoffMin,
		ThrottleBackoffMax: cfg.Async.ThrottleBackoffMax,
		AckWait:            cfg.Async.AckWait,
	}); err != nil {
		return nil, fmt.Errorf("server: async queue: %w", err)
	}
	if cfg.has(placement.RolePoller) {
		if err := c.async.Start(); err != nil {
			return nil, fmt.Errorf("server: async pollers: %w", err)
		}
	}
	c.onClose(func(ctx context.Context) { c.async.Close(ctx) })
	if !cfg.has(placement.RoleFrontend) {
		return c, nil
	}

	if c.frontend, err = frontend.New(frontend.Config{
		Region:    cfg.Region,
		Account:   cfg.Account,
		Functions: c.functions,
		Code:      c.code,
		Invoker:   c.manager,
		Async:     c.async,
		Runtimes:  c.runtimes,
		Logs:      c.logs,
		Logger:    log.With("component", "frontend"),
	}); err != nil {
		return nil, fmt.Errorf("server: frontend: %w", err)
	}
	// Provisioned concurrency lives in the metadata store; hand it to the
	// worker manager again.
	if err := c.frontend.Restore(ctx); err != nil {
		return nil, fmt.Errorf("server: restore concurrency settings: %w", err)
	}
	return c, nil
}

func (c *components) onClose(f func(ctx context.Context)) { c.closers = append(c.closers, f) }

// close stops everything in reverse start order: pollers stop taking
// events, the manager destroys every sandbox, the backbone closes last.
func (c *components) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i](ctx)
	}
	c.closers = nil
}

// handler routes the listener: Lambda's API (frontend role), Flint's own
// endpoints, health.
func (c *components) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /flint/v1/stats", c.statsHandler)
	mux.HandleFunc("GET /flint/v1/cluster", c.clusterHandler)
	if c.frontend == nil {
		return mux
	}
	for _, prefix := range frontend.Prefixes {
		mux.Handle(prefix, c.frontend)
	}
	ah := c.async.Handler()
	mux.Handle("/2019-09-25/", ah)
	mux.Handle("/flint/v1/invocations/", ah)
	mux.Handle("/flint/v1/queues/", ah)
	mux.Handle("GET /flint/v1/functions/{name}/logs", logsHandler(c.logs, c.cfg.Account))
	return mux
}
