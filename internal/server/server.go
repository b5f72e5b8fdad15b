// Package server wires every Flint component into one process: the
// all-in-one `flint server`. It holds no logic of its own beyond the order
// in which components start and stop.
//
// Start order: backbone → stores (metadata, code, logs) → runtimes →
// sandbox driver → worker → placement (+heartbeats) → worker manager →
// async service → frontend → HTTP listener. Stop is the reverse: the
// listener stops taking requests and lets in-flight ones finish, pollers
// stop, the worker manager destroys every sandbox, the backbone closes.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/sandbox/process"
)

// Config configures an all-in-one server.
type Config struct {
	Listen  string // address of the Lambda API, e.g. 127.0.0.1:9000
	DataDir string
	// NATSURL is the external NATS cluster, one URL or a comma-separated
	// list; "" starts the embedded server. With it the server joins a
	// Flint cluster: other nodes may place sandboxes on its worker, and
	// reserved concurrency is counted cluster-wide (docs/cluster.md).
	NATSURL  string
	NATSPort int // embedded NATS port; -1 picks a free one
	// Backbone tunes replication, storage limits and the security of the
	// connection to NATS.
	Backbone BackboneConfig
	// HostID names this node in the cluster (default: the hostname). Two
	// live nodes with one id refuse to run together.
	HostID string
	// Roles lists the components this node runs: any of "frontend",
	// "worker", "poller" (default all three).
	Roles []string
	// WorkerListen is where the worker serves other nodes (cluster mode,
	// worker role): default the API's host with any free port.
	WorkerListen string
	// WorkerAdvertise is the host:port other nodes reach the worker at
	// (default: the address WorkerListen bound, with the host id as host
	// when it bound every interface).
	WorkerAdvertise string
	// ClusterSecretFile holds the cluster key every node's worker port
	// requires (at least 16 bytes; every node the same file). Empty: the
	// key in the backbone's flint-secrets bucket, made by the first node.
	ClusterSecretFile string
	// WorkerTLSCert and WorkerTLSKey (PEM files) make the worker port
	// serve TLS; WorkerTLSCA (PEM) is the CA the other nodes' worker
	// certificates are checked against. All three or none; every node of
	// a cluster alike.
	WorkerTLSCert, WorkerTLSKey, WorkerTLSCA string
	// MemoryOvercommit multiplies the memory the worker offers to
	// sandboxes (HostMemoryMB): a sandbox rarely uses its whole
	// MemorySize (default 1: no overcommit).
	MemoryOvercommit float64
	// HTTPIdleTimeout closes keep-alive connections idle this long
	// (default 2m).
	HTTPIdleTimeout time.Duration
	// MaxConnections caps the API's open connections; past it a new one
	// is answered 429 and closed (default 10000).
	MaxConnections int
	Region         string
	Account        string // the default account: the root key's, and every request's in auth.ModeDev
	KeepAlive      time.Duration
	HostMemoryMB   int // 0: three quarters of the host's RAM
	MaxSandboxes   int
	Logger         *slog.Logger
	// Ready, when set, is called with the API's address once the server
	// answers requests.
	Ready func(addr net.Addr)
	// ShutdownTimeout bounds how long in-flight invocations may take to
	// finish on shutdown.
	ShutdownTimeout time.Duration
	// Async tunes the asynchronous invocation service; zero values take
	// asyncq's defaults (Lambda's retry schedule).
	Async AsyncConfig
	// SandboxEgress, when set, gives every sandbox outbound network
	// access (NAT through a veth pair, or a tap device for microVMs, still
	// refusing the host, link-local and private addresses and other
	// sandboxes); nil: sandboxes have only loopback.
	SandboxEgress *process.EgressConfig
	// SandboxInit is the binary the process driver starts as each
	// sandbox's init (cmd/flint-sandbox-init, built from the same
	// source). "" takes flint-sandbox-init next to this executable when
	// it is safe to run and built from the same init source, else
	// re-executes this binary (which starts slower: see
	// docs/sandbox-process.md).
	SandboxInit string
	// SandboxPool bounds the sandboxes the process driver keeps prepared
	// ahead of cold starts (package sandbox/pool; the pool's size follows
	// the cold-start rate): 0 takes pool.DefaultMaxSize, a negative value
	// turns the pool off.
	SandboxPool int
	// SandboxShareCPUs lets every process sandbox run on every CPU
	// instead of on its own (process.Config.ShareCPUs).
	SandboxShareCPUs bool
	// SandboxDriver is "process" (the default: namespaces, cgroups,
	// seccomp) or "microvm" (a QEMU microVM per sandbox, see
	// docs/sandbox-microvm.md).
	SandboxDriver string
	// VMInit is the flint-vm-init binary for the microvm driver ("" looks
	// next to this executable, then on PATH).
	VMInit string
	// CodeURLTTL is how long the download links of GetFunction and
	// GetLayerVersion stay valid (default 10 minutes, as Lambda's).
	CodeURLTTL time.Duration
	// Auth is how requests are authenticated: auth.ModeRequired verifies
	// every SigV4 signature; auth.ModeDev accepts anything as the default
	// account. "" picks ModeDev when Listen is a loopback address and
	// refuses to start otherwise.
	Auth auth.Mode
	// MetricsTokenFile, when set, names a file holding a bearer token:
	// GET /metrics with "Authorization: Bearer <token>" is then served
	// without a SigV4 signature (Prometheus's credentials_file), even
	// with Auth required. The file is read at start; surrounding white
	// space is dropped; it must hold at least 16 characters.
	MetricsTokenFile string
	// URLDomain is the base domain of function URLs: their hosts are
	// <url-id>.lambda-url.<Region>.<URLDomain> (default "localhost").
	URLDomain string
	// URLPort is the port written into function URLs: 0 for the port the
	// server listens on, -1 for none (a proxy in front on port 80).
	URLPort int
	// StatsGC lets GET /flint/v1/stats?gc=true force a garbage collection
	// before it reads the heap, for tests that compare heap sizes; off,
	// gc=true is refused (any caller could make the server stop the world).
	StatsGC bool
}

// BackboneConfig is the part of backbone.Config (and of the stores'
// limits) an operator tunes from the command line.
type BackboneConfig struct {
	// Replicas of every stream, KV bucket and object store (default 1).
	Replicas int
	// MaxStore bounds the embedded server's JetStream storage (bytes);
	// 0 sizes it from the data dir's disk.
	MaxStore int64
	// Reserve is the free space kept on the data dir's disk; 0: 5 %.
	Reserve int64
	// LogsMaxBytes bounds the function log stream; 0: an eighth of the
	// storage limit, at most 1 GiB.
	LogsMaxBytes int64
	// Creds, TLSCA, TLSCert, TLSKey secure connections to an external
	// cluster (files).
	Creds, TLSCA, TLSCert, TLSKey string
}

// AsyncConfig is the part of asyncq.Config an operator (or a test) may
// tune from the command line.
type AsyncConfig struct {
	// RetryDelays is the wait before each retry after a function error
	// (default Lambda's 1 min, 2 min).
	RetryDelays []time.Duration
	// ThrottleBackoffMin and ThrottleBackoffMax bound the back-off after
	// a throttle or system error (default 1 s and 5 min).
	ThrottleBackoffMin time.Duration
	ThrottleBackoffMax time.Duration
	// AckWait is how long an event taken by a process that died stays
	// invisible before it is redelivered (default 30 s).
	AckWait time.Duration
}

// Validate fills defaults and reports whether cfg is usable.
func (c *Config) Validate() error {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9000"
	}
	if c.DataDir == "" {
		return errors.New("server: a data dir is required")
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Account == "" {
		c.Account = "000000000000"
	}
	if !auth.ValidAccount(c.Account) {
		return fmt.Errorf("server: account %q is not a 12-digit id", c.Account)
	}
	if _, err := auth.ParseMode(string(c.Auth)); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if c.Auth == "" {
		if !loopback(c.Listen) {
			return fmt.Errorf("server: %s is not a loopback address: start with --auth required (or, knowing that anyone who reaches it can run code, --auth dev)", c.Listen)
		}
		c.Auth = auth.ModeDev
	}
	if _, err := readMetricsToken(c.MetricsTokenFile); err != nil {
		return err
	}
	if c.URLDomain == "" {
		c.URLDomain = "localhost"
	}
	switch c.SandboxDriver {
	case "":
		c.SandboxDriver = "process"
	case "process", "microvm":
	default:
		return fmt.Errorf("server: unknown sandbox driver %q (process or microvm)", c.SandboxDriver)
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 5 * time.Minute
	}
	if c.MaxSandboxes <= 0 {
		c.MaxSandboxes = 1000
	}
	if c.HostMemoryMB <= 0 {
		c.HostMemoryMB = hostMemoryMB() * 3 / 4
	}
	if c.MemoryOvercommit == 0 {
		c.MemoryOvercommit = 1
	}
	if c.MemoryOvercommit < 1 || c.MemoryOvercommit > 100 {
		return fmt.Errorf("server: memory overcommit %g: want a factor from 1 to 100", c.MemoryOvercommit)
	}
	if c.HostID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "local"
		}
		c.HostID = h
	}
	if len(c.HostID) > 128 || strings.ContainsAny(c.HostID, " \t\n/") {
		return fmt.Errorf("server: host id %q: want at most 128 characters, no spaces or slashes", c.HostID)
	}
	if n := countSet(c.WorkerTLSCert, c.WorkerTLSKey, c.WorkerTLSCA); n != 0 && n != 3 {
		return errors.New("server: --worker-tls-cert, --worker-tls-key and --worker-tls-ca go together: set all three (the same CA on every node) or none")
	}
	roles, err := parseRoles(c.Roles)
	if err != nil {
		return err
	}
	c.Roles = roles
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.HTTPIdleTimeout <= 0 {
		c.HTTPIdleTimeout = 2 * time.Minute
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 10000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Run starts the server and serves until ctx is done, then shuts down
// cleanly: in-flight invocations finish (up to ShutdownTimeout) and no
// sandbox is left behind.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
		return fmt.Errorf("server: data dir: %w", err)
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	cfg.DataDir = dataDir
	unlock, err := lockDataDir(dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	// Listen first: a taken port fails before anything else starts.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	defer ln.Close()
	if cfg.URLPort == 0 {
		cfg.URLPort = ln.Addr().(*net.TCPAddr).Port
	}

	s, err := start(ctx, cfg)
	if err != nil {
		return err
	}
	// Runs last: whatever state the backbone is in, closing the
	// components takes at most closeTimeout.
	defer s.close()

	handler, err := s.handler()
	if err != nil {
		return err
	}
	cl := newCapListener(ln, cfg.MaxConnections, cfg.Logger)
	s.conns = cl
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// A request (body included) is read, and its answer written,
		// within the longest invocation Lambda allows (15 min) plus a
		// margin; an idle keep-alive connection is closed after
		// HTTPIdleTimeout. A read deadline shorter than an invocation
		// would cancel it: net/http ends the request's context when
		// the connection's read deadline passes.
		ReadTimeout:  maxInvocation + time.Minute,
		WriteTimeout: maxInvocation + time.Minute,
		IdleTimeout:  cfg.HTTPIdleTimeout,
		ErrorLog:     slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(cl) }()
	driver := "none"
	if s.driver != nil {
		driver = s.driver.Name()
	}
	cfg.Logger.Info("flint server listening", "addr", ln.Addr().String(), "data", cfg.DataDir,
		"nats", s.bb.ClientURL(), "host", cfg.HostID, "roles", cfg.Roles, "driver", driver, "runtimes", s.runtimes.Names())
	if cfg.Auth == auth.ModeDev {
		cfg.Logger.Warn("authentication is off (--auth dev): every request is accepted, signed or not, as the root of account "+cfg.Account,
			"account", cfg.Account)
	} else {
		cfg.Logger.Info("authentication required: every request must be signed (SigV4) with a Flint access key", "auth", string(cfg.Auth))
	}
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}

	select {
	case err := <-errc:
		return fmt.Errorf("server: serve: %w", err)
	case <-ctx.Done():
	}
	cfg.Logger.Info("flint server shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		cfg.Logger.Warn("http shutdown: closing connections still open", "err", err)
		_ = hs.Close()
	}
	return nil
}

// maxInvocation is the longest timeout a function may have (Lambda's).
const maxInvocation = 15 * time.Minute

// loopback reports whether every address listen may bind is a loopback
// one ("127.0.0.1:9000", "[::1]:0", "localhost:9000"; not ":9000").
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func hostMemoryMB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 4096
	}
	var kb int
	if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err != nil {
		return 4096
	}
	return kb / 1024
}
