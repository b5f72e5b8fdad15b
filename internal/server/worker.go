package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/flintdev/flint/internal/codestore"
	"github.com/flintdev/flint/internal/hostproxy"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/worker"
	"github.com/flintdev/flint/internal/workermanager"
)

// startWorker starts the sandbox driver and the worker and, in a cluster,
// serves the worker to the other nodes (package hostproxy); it returns the
// address the worker is advertised at ("" when not served).
func (c *components) startWorker(ctx context.Context, hostID string) (addr string, err error) {
	cfg, log, data := c.cfg, c.cfg.Logger, c.cfg.DataDir
	if c.driver, c.sandboxInit, err = startDriver(ctx, cfg, c.onClose); err != nil {
		return "", err
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
		MemoryMB:     int(float64(cfg.HostMemoryMB) * cfg.MemoryOvercommit),
		MaxSandboxes: cfg.MaxSandboxes,
		Logger:       log.With("component", "worker", "host", hostID),
	}); err != nil {
		return "", fmt.Errorf("server: worker: %w", err)
	}
	c.onClose("worker", c.worker.Close)

	if !cfg.clustered() {
		return "", nil
	}
	if c.hostProxy, err = hostproxy.NewServer(hostproxy.ServerConfig{
		Host: workerHost{c.worker},
		Key:  c.clusterKey,
		OwnerAlive: func(owner string) bool {
			if c.placement == nil {
				return true
			}
			return ownerAlive(c.placement)(owner)
		},
		Logger: log.With("component", "hostproxy"),
	}); err != nil {
		return "", fmt.Errorf("server: %w", err)
	}
	ln, err := net.Listen("tcp", workerListenAddr(&cfg))
	if err != nil {
		c.hostProxy.Close(ctx)
		return "", fmt.Errorf("server: worker listener: %w", err)
	}
	if c.workerServeTLS != nil {
		ln = tls.NewListener(ln, c.workerServeTLS)
	}
	hs := &http.Server{Handler: c.hostProxy.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	c.onClose("worker for other nodes", func(ctx context.Context) error {
		_ = hs.Close() // in-flight invocations end with the sandboxes, below
		return c.hostProxy.Close(ctx)
	})
	addr = advertise(&cfg, ln.Addr())
	log.Info("worker serving other nodes", "listen", ln.Addr().String(), "advertise", addr, "tls", c.workerServeTLS != nil)
	return addr, nil
}

// workerHost adapts the in-process worker to the manager's Host.
type workerHost struct{ w *worker.Worker }

func (h workerHost) CreateSandbox(ctx context.Context, fn *metadata.Function) (workermanager.Sandbox, error) {
	sb, err := h.w.CreateSandbox(ctx, fn)
	if errors.Is(err, worker.ErrNoCapacity) {
		return nil, fmt.Errorf("%w: %w", workermanager.ErrHostFull, err)
	}
	if err != nil {
		return nil, err
	}
	return sb, nil
}

// Provisioned concurrency initialises worker sandboxes ahead of invocations.
var _ workermanager.Initializer = (*worker.Sandbox)(nil)

// Worker sandboxes stream responses (InvokeWithResponseStream, streaming URLs).
var _ workermanager.Streamer = (*worker.Sandbox)(nil)
