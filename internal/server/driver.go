package server

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/microvm"
	"github.com/flintdev/flint/internal/sandbox/pool"
	"github.com/flintdev/flint/internal/sandbox/process"
)

// startDriver builds the sandbox driver cfg.SandboxDriver names and
// registers what closes it (after the worker and the manager destroyed
// every sandbox). The string says which sandbox init the process driver starts
// ("" for the microVM driver).
func startDriver(ctx context.Context, cfg Config, onClose func(string, func(context.Context) error)) (sandbox.Driver, string, error) {
	log, data := cfg.Logger, cfg.DataDir
	if cfg.SandboxDriver == "microvm" {
		d, err := startMicroVM(ctx, cfg, onClose)
		return d, "", err
	}
	initPath, init := cfg.SandboxInit, cfg.SandboxInit+" (--sandbox-init)"
	if initPath == "" {
		initPath, init = defaultSandboxInit(ctx)
	}
	log.Info("process sandbox driver", "init", init)
	pcfg := sandboxDriverConfig(data, initPath, cfg.SandboxEgress, log)
	pcfg.ShareCPUs = cfg.SandboxShareCPUs
	pd, err := process.New(pcfg)
	if err != nil {
		return nil, "", fmt.Errorf("server: sandbox driver: %w", err)
	}
	if n, err := pd.RemoveStale(ctx); err != nil {
		log.Warn("removing sandbox cgroups left by an earlier run", "err", err)
	} else if n > 0 {
		log.Info("removed sandbox cgroups left by an earlier run", "count", n)
	}
	// Removes the egress firewall table.
	onClose("sandbox driver", pd.Close)
	if cfg.SandboxPool < 0 {
		return pd, init, nil
	}
	p, err := pool.New(pool.Config{
		Driver: pd, MaxSize: cfg.SandboxPool, Logger: log.With("component", "sandbox-pool"),
	})
	if err != nil {
		return nil, "", fmt.Errorf("server: sandbox pool: %w", err)
	}
	// Closers run in reverse: the pool's prepared sandboxes go before
	// the driver.
	onClose("sandbox pool", p.Close)
	return p, init, nil
}

// startMicroVM runs the microVM setup step (microvm.Setup, idempotent:
// the guest kernel into the machine's VM cache with apt the first time,
// the guest image under DATA/vm/image) and starts the driver, with its
// sandboxes' directories under DATA/vm/state. It fails, saying what is
// missing, when QEMU, the kernel, mkfs.ext4 or flint-vm-init cannot be had.
func startMicroVM(ctx context.Context, cfg Config, onClose func(string, func(context.Context) error)) (sandbox.Driver, error) {
	init, err := findVMInit(cfg.VMInit)
	if err != nil {
		return nil, err
	}
	data, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("server: microvm driver: %w", err)
	}
	res, err := microvm.Setup(ctx, microvm.SetupConfig{DataDir: data, InitPath: init, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("server: microvm driver: %w", err)
	}
	state := filepath.Join(data, microvm.StateSubdir)
	// Sandboxes of an earlier run died with it (QEMU has the parent-death
	// signal): only their files are left.
	if err := os.RemoveAll(state); err != nil {
		return nil, fmt.Errorf("server: microvm driver: %w", err)
	}
	d, err := microvm.New(microvm.Config{
		Kernel: res.Kernel, InitPath: init, QEMU: res.QEMU, StateDir: state, ImageDir: res.ImageDir,
		Egress: cfg.SandboxEgress, Logger: cfg.Logger.With("component", "sandbox"),
	})
	if err != nil {
		return nil, fmt.Errorf("server: microvm driver: %w", err)
	}
	if n, err := d.RemoveStale(); err != nil {
		cfg.Logger.Warn("removing VMM cgroups left by an earlier run", "err", err)
	} else if n > 0 {
		cfg.Logger.Info("removed VMM cgroups left by an earlier run", "count", n)
	}
	// Removes the VMMs' cgroup parent (and, with egress, the nftables
	// table).
	onClose("sandbox driver", func(context.Context) error { d.Close(); return nil })
	cfg.Logger.Info("microvm sandbox driver", "kernel", res.Kernel.Release, "accel", d.Accel())
	return d, nil
}

func findVMInit(path string) (string, error) {
	p, err := FindVMInit(path)
	if err != nil {
		return "", fmt.Errorf("server: %w", err)
	}
	return p, nil
}

// FindVMInit resolves the flint-vm-init binary: path when given, else
// next to this executable, else on PATH.
func FindVMInit(path string) (string, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("--vm-init: %w", err)
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
		return "", fmt.Errorf("the microvm driver needs flint-vm-init (CGO_ENABLED=0 go build ./cmd/flint-vm-init; put it next to flint or give --vm-init): %w", err)
	}
	return p, nil
}
