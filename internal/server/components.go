package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/flintdev/flint/internal/asyncq"
	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/codestore"
	"github.com/flintdev/flint/internal/frontend"
	"github.com/flintdev/flint/internal/lambdaerr"
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
	manager   *workermanager.Manager
	async     *asyncq.Service
	frontend  *frontend.Handler

	closers []closer // run in reverse order by close
}

// closer stops one component; name says which in the log if it fails.
type closer struct {
	name  string
	close func(ctx context.Context) error
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
	c.onClose("backbone", func(context.Context) error { c.bb.Close(); return nil })
	js := c.bb.JetStream()

	if c.functions, err = metadata.NewStore(ctx, js, metadata.WithRegion(cfg.Region), metadata.WithLogger(log.With("component", "metadata"))); err != nil {
		return nil, fmt.Errorf("server: metadata: %w", err)
	}
	c.onClose("metadata store", c.functions.Close)
	if c.code, err = codestore.New(codestore.Config{JS: js, Logger: log.With("component", "codestore")}); err != nil {
		return nil, fmt.Errorf("server: code store: %w", err)
	}
	if c.logs, err = logstore.New(logstore.Config{JS: js, Logger: log.With("component", "logstore")}); err != nil {
		return nil, fmt.Errorf("server: log store: %w", err)
	}
	c.onClose("log store", c.logs.Close)

	if c.runtimes, err = runtimes.New(runtimes.Config{AssetDir: filepath.Join(data, "runtimes")}); err != nil {
		return nil, fmt.Errorf("server: runtimes: %w", err)
	}
	// Each server's sandboxes share a cgroup parent named for its data dir,
	// so that the cgroups a crashed run left behind can be removed at
	// start without touching another server's.
	digest := sha256.Sum256([]byte(data))
	if c.driver, err = process.New(process.Config{
		StateDir:     filepath.Join(data, "sandboxes"),
		InitPath:     cfg.SandboxInit,
		CgroupParent: "flint-" + hex.EncodeToString(digest[:6]),
		Egress:       cfg.SandboxEgress,
		Logger:       log.With("component", "sandbox"),
	}); err != nil {
		return nil, fmt.Errorf("server: sandbox driver: %w", err)
	}
	if n, err := c.driver.RemoveStale(ctx); err != nil {
		log.Warn("removing sandbox cgroups left by an earlier run", "err", err)
	} else if n > 0 {
		log.Info("removed sandbox cgroups left by an earlier run", "count", n)
	}
	// Runs after the worker and the manager destroyed every sandbox:
	// removes the egress firewall table.
	c.onClose("sandbox driver", c.driver.Close)

	hostID, err := os.Hostname()
	if err != nil || hostID == "" {
		hostID = "local"
	}
	codeDir := filepath.Join(data, "code")
	if err := codestore.RemoveTemps(codeDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("removing partial code extractions", "err", err)
	}
	if c.worker, err = worker.New(worker.Config{
		HostID:       hostID,
		DataDir:      data,
		Driver:       c.driver,
		Code:         c.code,
		Logs:         c.logs,
		Runtimes:     c.runtimes,
		MemoryMB:     cfg.HostMemoryMB,
		MaxSandboxes: cfg.MaxSandboxes,
		Logger:       log.With("component", "worker", "host", hostID),
	}); err != nil {
		return nil, fmt.Errorf("server: worker: %w", err)
	}
	c.onClose("worker", c.worker.Close)

	if c.placement, err = placement.New(placement.Config{Logger: log.With("component", "placement")}); err != nil {
		return nil, fmt.Errorf("server: placement: %w", err)
	}
	stopSub, err := c.placement.Subscribe(c.bb.Conn())
	if err != nil {
		return nil, fmt.Errorf("server: placement heartbeats: %w", err)
	}
	c.onClose("placement heartbeat subscription", func(context.Context) error { stopSub(); return nil })
	status := func() placement.HostStatus {
		st := c.worker.Status()
		return placement.HostStatus{HostID: st.HostID, MemoryMB: st.MemoryMB, MaxSandboxes: st.MaxSandboxes, CachedCode: st.CachedCode}
	}
	// The first heartbeat goes in directly, so the host is known before
	// the first request; later ones travel over NATS like a remote
	// worker's would.
	if err := c.placement.Heartbeat(status()); err != nil {
		return nil, fmt.Errorf("server: register host: %w", err)
	}
	stopBeats := placement.StartHeartbeats(c.bb.Conn(), placement.DefaultHeartbeatInterval, status)
	c.onClose("heartbeats", func(context.Context) error { stopBeats(); return nil })

	host := workerHost{c.worker}
	if c.manager, err = workermanager.New(workermanager.Config{
		Placement: c.placement,
		Hosts: func(id string) (workermanager.Host, bool) {
			return host, id == hostID
		},
		KeepAlive: cfg.KeepAlive,
		Logger:    log.With("component", "workermanager"),
	}); err != nil {
		return nil, fmt.Errorf("server: worker manager: %w", err)
	}
	c.onClose("worker manager", c.manager.Close)

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
	if err := c.async.Start(); err != nil {
		return nil, fmt.Errorf("server: async pollers: %w", err)
	}
	c.onClose("async queue", c.async.Close)

	if c.frontend, err = frontend.New(frontend.Config{
		Region:    cfg.Region,
		Account:   cfg.Account,
		Functions: c.functions,
		Code:      c.code,
		Invoker:   c.manager,
		Async:     c.async,
		Runtimes:  c.runtimes,
		Logs:      c.logs,
		Preparer:  codePreparer{c.worker},
		Logger:    log.With("component", "frontend"),
	}); err != nil {
		return nil, fmt.Errorf("server: frontend: %w", err)
	}
	// Runs before the stores close: background preparations end first.
	c.onClose("frontend preparations", c.frontend.Close)
	// Reserved and provisioned concurrency live in the metadata store;
	// hand them to the worker manager again.
	if err := c.frontend.Restore(ctx); err != nil {
		return nil, fmt.Errorf("server: restore concurrency settings: %w", err)
	}
	return c, nil
}

func (c *components) onClose(name string, f func(ctx context.Context) error) {
	c.closers = append(c.closers, closer{name, f})
}

// close stops everything in reverse start order: pollers stop taking
// events, the manager destroys every sandbox, the backbone closes last.
// A component that fails to close (a sandbox it could not destroy, log
// entries it could not store) is logged, and the rest still close.
func (c *components) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := len(c.closers) - 1; i >= 0; i-- {
		if err := c.closers[i].close(ctx); err != nil {
			c.cfg.Logger.Error("shutdown: closing "+c.closers[i].name, "err", err)
		}
	}
	c.closers = nil
}

// handler routes the listener: health, Flint's own API under /flint/, and
// every other path to the frontend, which serves Lambda's API and answers
// unknown routes in Lambda's error format.
func (c *components) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.Handle("/flint/", c.flintAPI())
	mux.Handle("/", c.frontend)
	return mux
}

// flintAPI is Flint's own API (async invocation status, queues, logs,
// stats) in one route table; unknown routes under /flint/ answer a JSON
// ResourceNotFoundException.
func (c *components) flintAPI() http.Handler {
	mux := http.NewServeMux()
	ah := c.async.Handler()
	mux.Handle("/flint/v1/invocations/", ah)
	mux.Handle("/flint/v1/queues/", ah)
	mux.Handle("GET /flint/v1/functions/{name}/logs", logsHandler(c.logs, c.cfg.Account))
	mux.HandleFunc("GET /flint/v1/stats", c.statsHandler)
	mux.HandleFunc("/flint/", func(w http.ResponseWriter, r *http.Request) {
		lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.ResourceNotFound, "Flint has no route %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// codePreparer readies a changed function's code by unpacking it on this
// host's worker, before the frontend reports it Active.
type codePreparer struct{ w *worker.Worker }

func (p codePreparer) Prepare(ctx context.Context, fn *metadata.Function) error {
	return p.w.PrepareCode(ctx, fn.CodeDigest)
}

// workerHost adapts the in-process worker to the manager's Host.
type workerHost struct{ w *worker.Worker }

func (h workerHost) CreateSandbox(ctx context.Context, fn *metadata.Function) (workermanager.Sandbox, error) {
	sb, err := h.w.CreateSandbox(ctx, fn)
	if err != nil {
		return nil, err
	}
	return sb, nil
}

// Provisioned concurrency initialises worker sandboxes ahead of invocations.
var _ workermanager.Initializer = (*worker.Sandbox)(nil)
