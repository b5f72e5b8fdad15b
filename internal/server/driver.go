package server

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/microvm"
	"github.com/flintdev/flint/internal/sandbox/process"
	"github.com/flintdev/flint/internal/vm/kernel"
)

// startDriver builds the sandbox driver cfg.SandboxDriver names and
// registers what closes it (after the worker and the manager destroyed
// every sandbox).
func startDriver(ctx context.Context, cfg Config, onClose func(string, func(context.Context) error)) (sandbox.Driver, error) {
	log, data := cfg.Logger, cfg.DataDir
	if cfg.SandboxDriver == "microvm" {
		return startMicroVM(ctx, cfg, onClose)
	}
	d, err := process.New(sandboxDriverConfig(data, cfg.SandboxInit, cfg.SandboxEgress, log))
	if err != nil {
		return nil, fmt.Errorf("server: sandbox driver: %w", err)
	}
	if n, err := d.RemoveStale(ctx); err != nil {
		log.Warn("removing sandbox cgroups left by an earlier run", "err", err)
	} else if n > 0 {
		log.Info("removed sandbox cgroups left by an earlier run", "count", n)
	}
	// Removes the egress firewall table.
	onClose("sandbox driver", d.Close)
	return d, nil
}

// startMicroVM gets the guest kernel into the machine's VM cache
// (kernel.DefaultCacheDir: $FLINT_VM_CACHE, else ~/.cache/flint/vm; with
// apt, the first time), shared with the tests, and builds the guest image
// under DATA/vm/state.
func startMicroVM(ctx context.Context, cfg Config, onClose func(string, func(context.Context) error)) (sandbox.Driver, error) {
	init, err := findVMInit(cfg.VMInit)
	if err != nil {
		return nil, err
	}
	k, err := kernel.Fetch(ctx, kernel.Config{CacheDir: kernel.DefaultCacheDir(), Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("server: microvm driver: the guest kernel (Debian's linux-image-cloud-amd64, via apt-get): %w", err)
	}
	state := filepath.Join(cfg.DataDir, "vm", "state")
	// Sandboxes of an earlier run died with it (QEMU has the parent-death
	// signal): only their files are left.
	if err := os.RemoveAll(state); err != nil {
		return nil, fmt.Errorf("server: microvm driver: %w", err)
	}
	d, err := microvm.New(microvm.Config{
		Kernel: k, InitPath: init, StateDir: state, Logger: cfg.Logger.With("component", "sandbox"),
	})
	if err != nil {
		return nil, fmt.Errorf("server: microvm driver: %w", err)
	}
	if n, err := d.RemoveStale(); err != nil {
		cfg.Logger.Warn("removing VMM cgroups left by an earlier run", "err", err)
	} else if n > 0 {
		cfg.Logger.Info("removed VMM cgroups left by an earlier run", "count", n)
	}
	// Removes the VMMs' cgroup parent.
	onClose("sandbox driver", func(context.Context) error { d.Close(); return nil })
	cfg.Logger.Info("microvm sandbox driver", "kernel", k.Release, "accel", d.Accel())
	return d, nil
}

// findVMInit resolves the flint-vm-init binary: path when given, else
// next to this executable, else on PATH.
func findVMInit(path string) (string, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("server: --vm-init: %w", err)
		}
		return path, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "flint-vm-init")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("flint-vm-init")
	if err != nil {
		return "", fmt.Errorf("server: the microvm driver needs flint-vm-init (CGO_ENABLED=0 go build ./cmd/flint-vm-init; put it next to flint or give --vm-init): %w", err)
	}
	return p, nil
}
