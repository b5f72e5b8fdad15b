package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/asyncq"
	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/auth/keystore"
	"github.com/flintdev/flint/internal/auth/sigv4"
	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/codestore"
	"github.com/flintdev/flint/internal/codeurl"
	"github.com/flintdev/flint/internal/console"
	"github.com/flintdev/flint/internal/esm"
	"github.com/flintdev/flint/internal/frontend"
	"github.com/flintdev/flint/internal/funcurl"
	"github.com/flintdev/flint/internal/hostproxy"
	"github.com/flintdev/flint/internal/jsretry"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/layers"
	"github.com/flintdev/flint/internal/leases"
	"github.com/flintdev/flint/internal/logstore"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/metrics"
	"github.com/flintdev/flint/internal/placement"
	"github.com/flintdev/flint/internal/records"
	"github.com/flintdev/flint/internal/runtimes"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process"
	"github.com/flintdev/flint/internal/sqs"
	"github.com/flintdev/flint/internal/sqsapi"
	"github.com/flintdev/flint/internal/worker"
	"github.com/flintdev/flint/internal/workermanager"
)

// components is every part of a running all-in-one server.
type components struct {
	cfg       Config
	bb        *backbone.Backbone
	keys      *keystore.Store
	functions *metadata.Store
	code      *codestore.Store
	layers    *layers.Store
	codeURLs  *codeurl.Signer
	logs      *logstore.Store
	runtimes  *runtimes.Catalog
	driver    sandbox.Driver
	// sandboxInit says which sandbox init the process driver starts
	// (GET /flint/v1/stats); "" for the microVM driver.
	sandboxInit string
	worker      *worker.Worker
	placement   *placement.Service
	hostProxy   *hostproxy.Server // nil unless clustered with the worker role
	// provisioning keeps this node's share of the cluster's provisioned
	// concurrency (clustered frontends only; read by the heartbeats).
	provisioning atomic.Pointer[clusterProvisioning]
	// clusterKey authenticates this node to the other nodes' worker ports
	// and them to its own.
	clusterKey []byte
	// workerServeTLS and workerDialTLS are the worker port's TLS
	// (--worker-tls-*), nil without.
	workerServeTLS, workerDialTLS *tls.Config
	manager                       *workermanager.Manager
	async                         *asyncq.Service
	frontend                      *frontend.Handler
	metrics                       *metrics.Metrics
	// observed is the manager as the frontend and async service call
	// it: invocations counted and recorded.
	observed     *observedManager
	cgroupParent string
	urls         *funcurl.Handler
	queues       *sqs.Service
	sqsAPI       *sqsapi.Handler
	esm          *esm.Service
	conns        *capListener // set by Run

	closers []closer // run in reverse order by close
}

// closer stops one component; name says which in the log if it fails.
type closer struct {
	name  string
	close func(ctx context.Context) error
}

// sandboxDriverConfig is the process driver's configuration for a server
// on data dir data. Each server's sandboxes share a cgroup parent named for
// its data dir, so that the cgroups a crashed run left behind can be
// removed at start (or by Cleanup) without touching another server's.
func sandboxDriverConfig(data, init string, egress *process.EgressConfig, log *slog.Logger) process.Config {
	digest := sha256.Sum256([]byte(data))
	return process.Config{
		StateDir:     filepath.Join(data, "sandboxes"),
		InitPath:     init,
		CgroupParent: "flint-" + hex.EncodeToString(digest[:6]),
		Egress:       egress,
		Logger:       log.With("component", "sandbox"),
	}
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
	if c.metrics, err = metrics.New(metrics.Config{Sources: c.metricSources(), ProcessMetrics: true,
		Logger: log.With("component", "metrics")}); err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}

	bc := cfg.Backbone
	if c.bb, err = backbone.Start(backbone.Config{
		URL: cfg.NATSURL, DataDir: data, Port: cfg.NATSPort, Name: "flint-server",
		Replicas: bc.Replicas, MaxStore: bc.MaxStore, Reserve: bc.Reserve,
		Creds: bc.Creds, TLS: backbone.TLSConfig{CA: bc.TLSCA, Cert: bc.TLSCert, Key: bc.TLSKey},
		Logger: log.With("component", "backbone"),
	}); err != nil {
		return nil, err
	}
	c.onClose("backbone", func(context.Context) error { c.bb.Close(); return nil })
	// A NATS cluster seconds old (or electing a meta leader) may not
	// answer the first requests: the stores are opened through a
	// JetStream that retries such failures until the start is done.
	if err := jsretry.WaitReady(ctx, c.bb.JetStream(), log.With("component", "backbone")); err != nil {
		return nil, fmt.Errorf("server: backbone: %w", err)
	}
	startJS := jsretry.Starting(c.bb.JetStream(), log.With("component", "backbone"))
	defer startJS.Settle()
	var js jetstream.JetStream = startJS
	replicas := c.bb.Replicas()
	lim := c.bb.Limits()
	log.Info("backbone storage", "maxStoreBytes", lim.MaxStore, "reserveBytes", lim.Reserve, "replicas", replicas)
	logBytes := bc.LogsMaxBytes
	if logBytes == 0 {
		logBytes = lim.LogBytes()
	} else if err := lim.CheckLogBytes(logBytes); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}

	if c.keys, err = keystore.Open(ctx, keystore.Config{JS: js, Replicas: replicas, Logger: log.With("component", "keystore")}); err != nil {
		return nil, fmt.Errorf("server: key store: %w", err)
	}
	c.onClose("key store", c.keys.Close)
	credPath := filepath.Join(data, "credentials")
	var root auth.Key
	var created bool
	err = jsretry.Do(ctx, log, "root key", func(ctx context.Context) error {
		var err error
		root, created, err = c.keys.EnsureRoot(ctx, credPath, cfg.Account)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("server: root key: %w", err)
	}
	if created {
		log.Info("created the root access key of account "+cfg.Account+"; sign with it: AWS_SHARED_CREDENTIALS_FILE="+credPath+" AWS_PROFILE="+keystore.Profile,
			"credentials", credPath, "accessKeyId", root.AccessKeyID, "account", root.Account)
	} else {
		log.Info("root access key: AWS_SHARED_CREDENTIALS_FILE="+credPath+" AWS_PROFILE="+keystore.Profile,
			"credentials", credPath, "accessKeyId", root.AccessKeyID, "account", root.Account)
	}

	if c.functions, err = metadata.NewStore(ctx, js, metadata.WithRegion(cfg.Region), metadata.WithReplicas(replicas), metadata.WithLogger(log.With("component", "metadata"))); err != nil {
		return nil, replicaHint(fmt.Errorf("server: metadata: %w", err), replicas)
	}
	c.onClose("metadata store", c.functions.Close)
	if c.code, err = codestore.New(codestore.Config{JS: js, Replicas: replicas, Gate: c.bb, Logger: log.With("component", "codestore")}); err != nil {
		return nil, replicaHint(fmt.Errorf("server: code store: %w", err), replicas)
	}
	if c.layers, err = layers.New(ctx, layers.Config{JS: js, Replicas: replicas, Region: cfg.Region}); err != nil {
		return nil, fmt.Errorf("server: layer store: %w", err)
	}
	if c.codeURLs, err = codeurl.New(ctx, codeurl.Config{
		JS: js, Replicas: replicas, Packages: c.code, TTL: cfg.CodeURLTTL,
		IsNotFound: func(err error) bool { return errors.Is(err, codestore.ErrNotFound) },
		Logger:     log.With("component", "codeurl"),
	}); err != nil {
		return nil, fmt.Errorf("server: code links: %w", err)
	}
	if c.logs, err = logstore.New(logstore.Config{JS: js, MaxBytes: logBytes, Replicas: replicas, Gate: c.bb, Logger: log.With("component", "logstore")}); err != nil {
		return nil, replicaHint(fmt.Errorf("server: log store: %w", err), replicas)
	}
	c.onClose("log store", c.logs.Close)

	if c.runtimes, err = runtimes.New(runtimes.Config{AssetDir: filepath.Join(data, "runtimes")}); err != nil {
		return nil, fmt.Errorf("server: runtimes: %w", err)
	}
	hostID, instance := cfg.HostID, newInstance()
	// Placement hears the heartbeats from here on: by the end of the host
	// id check below, a cluster node knows every live host before it
	// serves its first request.
	if c.placement, err = placement.New(placement.Config{Logger: log.With("component", "placement")}); err != nil {
		return nil, fmt.Errorf("server: placement: %w", err)
	}
	stopSub, err := c.placement.Subscribe(c.bb.Conn())
	if err != nil {
		return nil, fmt.Errorf("server: placement heartbeats: %w", err)
	}
	c.onClose("placement heartbeat subscription", func(context.Context) error { stopSub(); return nil })
	if cfg.clustered() {
		// A second live node with this id would make placement send one
		// host's sandboxes to the other: refuse before heartbeating.
		if err := checkHostIDFree(c.bb.Conn(), hostID, instance, 3*placement.DefaultHeartbeatInterval); err != nil {
			return nil, err
		}
	}
	if cfg.has(placement.RoleWorker) && cfg.SandboxDriver != "microvm" {
		// The process driver's sandboxes share this cgroup parent: the
		// host's memory in use is read from it (metrics).
		c.cgroupParent = sandboxDriverConfig(data, cfg.SandboxInit, cfg.SandboxEgress, log).CgroupParent
	}

	// Every node loads the cluster key, the embedded one too: other
	// servers may join its NATS with --nats-url, and it then reaches
	// their workers.
	if c.clusterKey, err = loadClusterKey(ctx, &cfg, js, replicas, log); err != nil {
		return nil, err
	}
	if c.workerServeTLS, c.workerDialTLS, err = workerTLS(&cfg); err != nil {
		return nil, err
	}
	var workerAddr string
	if cfg.has(placement.RoleWorker) {
		if workerAddr, err = c.startWorker(ctx, hostID); err != nil {
			return nil, err
		}
	}

	status := func() placement.HostStatus {
		hs := placement.HostStatus{HostID: hostID, Roles: cfg.Roles, Instance: instance, Addr: workerAddr, Shared: cfg.clustered()}
		if c.worker != nil {
			hs.Driver = c.driver.Name()
			st := c.worker.Status()
			hs.MemoryMB, hs.MaxSandboxes, hs.CachedCode = st.MemoryMB, st.MaxSandboxes, st.CachedCode
			hs.Sandboxes, hs.UsedMB = st.Sandboxes, st.MemoryUsedMB
		}
		if cp := c.provisioning.Load(); cp != nil {
			hs.Provisioned = cp.report()
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
	c.onClose("heartbeats", func(context.Context) error { stopBeats(); return nil })

	hosts := &hostSet{
		self: hostID, owner: hostID + "/" + instance, key: c.clusterKey, tls: c.workerDialTLS, placement: c.placement,
		log: log.With("component", "hosts"), remotes: map[string]*remote{},
	}
	if c.worker != nil {
		hosts.local = workerHost{c.worker}
	}
	mcfg := workermanager.Config{
		Placement: c.placement,
		Hosts: func(id string) (workermanager.Host, bool) {
			h, ok := hosts.lookup(id)
			if !ok {
				return nil, false
			}
			return observedHost{Host: h, id: id, metrics: c.metrics}, true
		},
		KeepAlive: cfg.KeepAlive,
		Logger:    log.With("component", "workermanager"),
	}
	if cfg.clustered() {
		// Reserved concurrency holds across every node that admits
		// invocations.
		if mcfg.Leases, err = leases.New(ctx, leases.Config{JS: js, Replicas: replicas, Logger: log.With("component", "leases")}); err != nil {
			return nil, replicaHint(fmt.Errorf("server: %w", err), replicas)
		}
	}
	if c.manager, err = workermanager.New(mcfg); err != nil {
		return nil, fmt.Errorf("server: worker manager: %w", err)
	}
	c.onClose("worker manager", c.manager.Close)
	if cfg.clustered() {
		stopSync := hosts.start(c.manager)
		c.onClose("host sync", func(context.Context) error { stopSync(); return nil })
	}
	// In a cluster the frontends split each provisioned concurrency config
	// among themselves (provisioned.go); alone, the frontend hands it to
	// its manager directly.
	var concurrencyControl frontend.ConcurrencyController
	if cfg.clustered() && cfg.has(placement.RoleFrontend) {
		var cp *clusterProvisioning
		err := jsretry.Do(ctx, log, "provisioned concurrency watch", func(context.Context) error {
			var err error
			cp, err = startProvisioning(hostID, c.functions, c.manager, c.placement, log.With("component", "provisioning"), placement.DefaultHeartbeatInterval)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		c.provisioning.Store(cp)
		c.onClose("provisioned concurrency", func(context.Context) error { cp.stop(); return nil })
		concurrencyControl = cp
	}
	// Reserved concurrency reaches this node's manager through the store,
	// whichever node's API set it.
	var stopWatch func()
	err = jsretry.Do(ctx, log, "reserved concurrency watch", func(context.Context) error {
		var err error
		stopWatch, err = c.functions.WatchReservedConcurrency(func(account, name string, n int, set bool) {
			if set {
				c.manager.SetReservedConcurrency(account, name, n)
			} else {
				c.manager.ClearReservedConcurrency(account, name)
			}
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	c.onClose("reserved concurrency watch", func(context.Context) error { stopWatch(); return nil })
	c.observed = &observedManager{Manager: c.manager, metrics: c.metrics,
		records: records.NewWriter(c.logs, log.With("component", "records"))}

	if c.async, err = asyncq.New(asyncq.Config{
		JetStream:      c.metrics.JetStream(js, "asyncq"),
		Invoker:        c.observed,
		Observer:       c.metrics,
		Functions:      c.functions,
		DefaultAccount: cfg.Account,
		Logger:         log.With("component", "asyncq"),

		RetryDelays:        cfg.Async.RetryDelays,
		ThrottleBackoffMin: cfg.Async.ThrottleBackoffMin,
		ThrottleBackoffMax: cfg.Async.ThrottleBackoffMax,
		AckWait:            cfg.Async.AckWait,
		Replicas:           replicas,
		Gate:               c.bb,

		AccountOf: func(r *http.Request) (string, error) { return auth.AccountOf(r.Context(), cfg.Account), nil },
	}); err != nil {
		return nil, replicaHint(fmt.Errorf("server: async queue: %w", err), replicas)
	}
	if cfg.has(placement.RolePoller) {
		if err := c.async.Start(); err != nil {
			return nil, fmt.Errorf("server: async pollers: %w", err)
		}
	}
	c.onClose("async queue", c.async.Close)

	urlPort := ""
	if cfg.URLPort > 0 {
		urlPort = strconv.Itoa(cfg.URLPort)
	}
	if c.queues, err = sqs.New(ctx, sqs.Config{JetStream: js, Region: cfg.Region, Replicas: replicas, Logger: log}); err != nil {
		return nil, fmt.Errorf("server: sqs queues: %w", err)
	}
	c.onClose("sqs queues", c.queues.Close)
	if c.sqsAPI, err = sqsapi.New(sqsapi.Config{Queues: c.queues, DefaultAccount: cfg.Account, Logger: log.With("component", "sqsapi")}); err != nil {
		return nil, fmt.Errorf("server: sqs api: %w", err)
	}

	if c.esm, err = esm.New(ctx, esm.Config{
		JetStream:      js,
		Queues:         c.queues,
		Functions:      c.functions,
		Invoker:        c.observed,
		Region:         cfg.Region,
		DefaultAccount: cfg.Account,
		Replicas:       replicas,
		Logger:         log,
	}); err != nil {
		return nil, fmt.Errorf("server: event source mappings: %w", err)
	}
	// Mapping pollers run where the async pollers run: on every server
	// with the poller role.
	if cfg.has(placement.RolePoller) {
		if err := c.esm.Start(); err != nil {
			return nil, fmt.Errorf("server: event source mapping pollers: %w", err)
		}
	}
	c.onClose("event source mappings", c.esm.Close)
	if !cfg.has(placement.RoleFrontend) {
		return c, nil
	}

	// Code is unpacked ahead of Active on this host's worker; a node
	// without one leaves it to the first cold start.
	var preparer frontend.Preparer
	if c.worker != nil {
		preparer = codePreparer{c.worker}
	}
	if c.frontend, err = frontend.New(frontend.Config{
		FunctionURL: func(id string) string { return c.urls.URL(id, urlPort) },
		Region:      cfg.Region,
		Account:     cfg.Account,
		Functions:   c.functions,
		Code:        c.code,
		Invoker:     c.observed,
		Concurrency: concurrencyControl,
		Async:       c.async,
		Runtimes:    c.runtimes,
		Logs:        c.logs,
		Gate:        c.bb,
		Layers:      c.layers,
		CodeURLs:    c.codeURLs,
		Preparer:    preparer,
		Logger:      log.With("component", "frontend"),

		EventSourceMappings: c.esm.Handler(),
	}); err != nil {
		return nil, fmt.Errorf("server: frontend: %w", err)
	}
	// Runs before the stores close: background preparations end first.
	c.onClose("frontend preparations", c.frontend.Close)
	// AWS_IAM function URLs verify signatures as the API does (service
	// lambda); with --auth dev they accept every request as the default
	// account's, as the API does.
	var verify funcurl.Verifier
	if cfg.Auth == auth.ModeRequired {
		ac := c.authConfig()
		ac.ServiceFor = nil // a URL's requests are signed for lambda, whatever they look like
		v, err := sigv4.New(ac, nil)
		if err != nil {
			return nil, fmt.Errorf("server: function url auth: %w", err)
		}
		verify = v.Verify
	}
	if c.urls, err = funcurl.New(funcurl.Config{
		Verify:         verify,
		Domain:         cfg.URLDomain,
		Region:         cfg.Region,
		Lookup:         c.functions,
		Invoke:         c.frontend,
		DefaultAccount: cfg.Account,
		Logger:         log,
	}); err != nil {
		return nil, fmt.Errorf("server: function urls: %w", err)
	}
	// Provisioned concurrency lives in the metadata store; hand it to the
	// worker manager again (reserved concurrency comes through the watch
	// above).
	if err := c.frontend.Restore(ctx); err != nil {
		return nil, fmt.Errorf("server: restore concurrency settings: %w", err)
	}
	return c, nil
}

func (c *components) onClose(name string, f func(ctx context.Context) error) {
	c.closers = append(c.closers, closer{name, f})
}

// closeTimeout bounds closing the components at shutdown, whatever state
// the backbone is in; each step gets at most closeStep of it.
const (
	closeTimeout = 20 * time.Second
	closeStep    = 10 * time.Second
)

// close stops everything in reverse start order: pollers stop taking
// events, the manager destroys every sandbox, the backbone closes last.
// A component that fails to close (a sandbox it could not destroy, log
// entries it could not store) is logged, and the rest still close. A step
// that does not return within its share is left behind (and logged), so
// shutdown ends in bounded time.
func (c *components) close() {
	deadline := time.Now().Add(closeTimeout)
	for i := len(c.closers) - 1; i >= 0; i-- {
		step := min(time.Until(deadline), closeStep)
		ctx, cancel := context.WithTimeout(context.Background(), step)
		done := make(chan struct{})
		cl := c.closers[i]
		go func() {
			defer close(done)
			if err := cl.close(ctx); err != nil {
				c.cfg.Logger.Error("shutdown: closing "+cl.name, "err", err)
			}
		}()
		select {
		case <-done:
		case <-time.After(step + time.Second):
			c.cfg.Logger.Error("shutdown: closing "+cl.name+" did not finish in time, going on", "budget", step)
		}
		cancel()
	}
	c.closers = nil
}

// replicaHint adds to a failure to open a store with more than one
// replica what the operator can do.
func replicaHint(err error, replicas int) error {
	if replicas <= 1 {
		return err
	}
	return fmt.Errorf("%w (with --nats-replicas %d every stream, KV bucket and object store is created, or updated, with %d replicas: "+
		"the cluster needs %d JetStream servers up; to change one by hand: nats stream edit <stream> --replicas %d; see docs/backbone.md)",
		err, replicas, replicas, replicas, replicas)
}

// rootOnly are the paths only the server's root key may call: key
// management and the server-wide views.
var rootOnly = []string{keystore.KeysPath, keystore.KeysPath + "/", "/flint/v1/stats", "/flint/v1/cluster", "/flint/v1/cluster/", metricsPath}

// public are the paths served without SigV4: health checks, code
// download links, which carry their own signature, and the web console's
// static files (they hold no data; the page signs its API calls).
var public = []string{"/healthz", "/readyz", "/flint/v1/code/", console.Prefix, "/console"}

// authConfig configures the sigv4 middleware.
func (c *components) authConfig() sigv4.Config {
	return sigv4.Config{
		Mode:           c.cfg.Auth,
		Keys:           c.keys,
		DefaultAccount: c.cfg.Account,
		Region:         c.cfg.Region,
		RootOnly:       rootOnly,
		Public:         public,
		ServiceFor: func(r *http.Request) string {
			if sqsapi.Match(r) {
				return "sqs"
			}
			return ""
		},
		Logger: c.cfg.Logger.With("component", "auth"),
	}
}

// handler is the listener's handler: requests to a function URL's host go
// to the URL handler (which verifies AWS_IAM URLs' signatures itself),
// every other request through the sigv4 middleware to routes.
func (c *components) handler() (http.Handler, error) {
	api, err := sigv4.New(c.authConfig(), c.routes())
	if err != nil {
		return nil, err
	}
	// The metrics wrapper is outermost, so refused requests are counted
	// too.
	token, err := readMetricsToken(c.cfg.MetricsTokenFile)
	if err != nil {
		return nil, err
	}
	scrape := c.metrics.Handler() // built once, not per scrape
	return c.metrics.HTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != nil && r.URL.Path == metricsPath && r.Method == http.MethodGet && bearerIs(r, token) {
			scrape.ServeHTTP(w, r)
			return
		}
		if c.urls == nil { // a node without the frontend role
			api.ServeHTTP(w, r)
			return
		}
		if _, ok := c.urls.Match(r.Host); ok {
			c.urls.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})), nil
}

// routes routes the listener: health, Flint's own API under /flint/, and
// every other path to the frontend, which serves Lambda's API and answers
// unknown routes in Lambda's error format.
func (c *components) routes() http.Handler {
	mux := http.NewServeMux()
	// Liveness: the process answers.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	// Readiness: this node can take writes (backbone connected, JetStream
	// answering with a quorum, room on the disk).
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := c.bb.Ready(); err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: " + lambdaerr.Public(err).Message + "\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.Handle("/flint/", c.flintAPI())
	// /metrics, /console/ and the invocation records (a more specific
	// pattern than /flint/).
	c.observeRoutes(mux)
	if c.frontend != nil { // a worker or poller node serves no Lambda API
		mux.Handle("/", c.frontend)
	}
	// The SQS API shares the listener: its requests are told apart by
	// X-Amz-Target or a form Action (sqsapi.Match), not by path.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.sqsAPI != nil && sqsapi.Match(r) {
			c.sqsAPI.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// flintAPI is Flint's own API (async invocation status, queues, logs,
// stats, cluster, metrics records, code download links, access keys) in one
// route table; unknown routes under /flint/ answer a JSON
// ResourceNotFoundException.
func (c *components) flintAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /flint/v1/stats", c.statsHandler)
	mux.HandleFunc("GET /flint/v1/cluster", c.clusterHandler)
	kh := c.keys.Handler()
	mux.Handle(keystore.KeysPath, kh)
	mux.Handle(keystore.KeysPath+"/", kh)
	mux.HandleFunc("/flint/", func(w http.ResponseWriter, r *http.Request) {
		lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.ResourceNotFound, "Flint has no route %s %s", r.Method, r.URL.Path))
	})
	if c.frontend == nil {
		return mux
	}
	ah := c.async.Handler()
	mux.Handle("/flint/v1/invocations/", ah)
	mux.Handle("/flint/v1/queues/", ah)
	mux.Handle("GET /flint/v1/functions/{name}/logs", logsHandler(c.logs, c.cfg.Account))
	// Download links of code packages carry their own signature (no AWS
	// credentials), so plain HTTP clients can fetch them.
	mux.Handle(codeurl.PathPrefix, c.codeURLs.Handler())
	return mux
}

// codePreparer readies a changed function's code by unpacking it on this
// host's worker, before the frontend reports it Active.
type codePreparer struct{ w *worker.Worker }

func (p codePreparer) Prepare(ctx context.Context, fn *metadata.Function) error {
	return p.w.PrepareCode(ctx, fn.CodeDigest)
}
