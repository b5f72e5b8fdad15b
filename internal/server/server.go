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
	"time"

	"github.com/flintdev/flint/internal/sandbox/process"
)

// Config configures an all-in-one server.
type Config struct {
	Listen       string // address of the Lambda API, e.g. 127.0.0.1:9000
	DataDir      string
	NATSURL      string // external NATS; "" starts the embedded one
	NATSPort     int    // embedded NATS port; -1 picks a free one
	Region       string
	Account      string
	KeepAlive    time.Duration
	HostMemoryMB int // 0: three quarters of the host's RAM
	MaxSandboxes int
	Logger       *slog.Logger
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
	// access (veth + NAT, still refusing the host, link-local and private
	// addresses and other sandboxes); nil: sandboxes have only loopback.
	SandboxEgress *process.EgressConfig
	// SandboxInit is the binary the process driver starts as each
	// sandbox's init: "" re-executes this binary; cmd/flint-sandbox-init
	// is a smaller one that starts faster (it must come from the same
	// build).
	SandboxInit string
	// StatsGC lets GET /flint/v1/stats?gc=true force a garbage collection
	// before it reads the heap, for tests that compare heap sizes; off,
	// gc=true is refused (any caller could make the server stop the world).
	StatsGC bool
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
	if len(c.Account) != 12 {
		return fmt.Errorf("server: account %q is not a 12-digit id", c.Account)
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
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 30 * time.Second
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
	// Listen first: a taken port fails before anything else starts.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	defer ln.Close()

	s, err := start(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.close()

	hs := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	cfg.Logger.Info("flint server listening", "addr", ln.Addr().String(), "data", cfg.DataDir,
		"nats", s.bb.ClientURL(), "driver", s.driver.Name(), "runtimes", s.runtimes.Names())
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
		cfg.Logger.Warn("http shutdown", "err", err)
	}
	return nil
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
