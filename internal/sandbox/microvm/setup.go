package microvm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/flintdev/flint/internal/vm/kernel"
	"github.com/flintdev/flint/internal/vm/qemu"
)

// Layout of the microVM driver under a server's data directory.
const (
	// ImageSubdir holds the guest image and its snapshots (Config.ImageDir).
	ImageSubdir = "vm/image"
	// StateSubdir holds the running sandboxes' directories (Config.StateDir).
	StateSubdir = "vm/state"
)

// SetupConfig configures Setup.
type SetupConfig struct {
	// DataDir is the server's data directory. Required, absolute.
	DataDir string
	// KernelCache is where the kernel package is unpacked ("":
	// kernel.DefaultCacheDir(), shared by every data directory and the
	// tests of the machine).
	KernelCache string
	// InitPath is the static flint-vm-init binary. Required.
	InitPath string
	// QEMU is the qemu-system-x86_64 binary ("" finds it on PATH).
	QEMU string
	// Logger receives progress (nil: discarded).
	Logger *slog.Logger
}

// Validate reports a configuration error.
func (c SetupConfig) Validate() error {
	switch {
	case c.DataDir == "" || !filepath.IsAbs(c.DataDir):
		return fmt.Errorf("microvm setup: the data directory %q must be an absolute path", c.DataDir)
	case c.InitPath == "":
		return errors.New("microvm setup: the flint-vm-init binary is required")
	}
	return nil
}

// SetupResult says what Setup found or made.
type SetupResult struct {
	Kernel   *kernel.Kernel
	ImageDir string
	QEMU     string
}

// Setup makes a data directory ready for the microVM driver, and is
// idempotent: it checks for QEMU, gets Debian's cloud kernel with apt-get
// download and unpacks it (kernel.Fetch: once per machine), and builds the
// guest image into DataDir/vm/image (image.go, rootfs.go: again only when
// its inputs changed). New does the same image step; running Setup first
// moves the seconds it takes out of the server's start, and reports what
// is missing in the user's terms.
func Setup(ctx context.Context, cfg SetupConfig) (*SetupResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	bin := cfg.QEMU
	if bin == "" {
		bin = qemu.DefaultBinary
	}
	bin, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("microvm setup: QEMU not found (apt-get install --no-install-recommends qemu-system-x86): %w", err)
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return nil, fmt.Errorf("microvm setup: mkfs.ext4 not found (apt-get install e2fsprogs): %w", err)
	}
	if _, err := os.Stat(cfg.InitPath); err != nil {
		return nil, fmt.Errorf("microvm setup: flint-vm-init: %w", err)
	}
	cache := cfg.KernelCache
	if cache == "" {
		cache = kernel.DefaultCacheDir()
	}
	k, err := kernel.Fetch(ctx, kernel.Config{CacheDir: cache, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("microvm setup: the guest kernel (Debian's %s, with apt-get download; run apt-get update first?): %w", kernel.DefaultPackage, err)
	}
	c := Config{
		Kernel: k, InitPath: cfg.InitPath, QEMU: bin, Logger: cfg.Logger,
		StateDir: filepath.Join(cfg.DataDir, StateSubdir), ImageDir: filepath.Join(cfg.DataDir, ImageSubdir),
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(c.ImageDir), 0o711); err != nil {
		return nil, fmt.Errorf("microvm setup: %w", err)
	}
	cfg.Logger.Info("microvm setup: building the guest image", "dir", c.ImageDir)
	if _, err := buildImage(c, bin, ""); err != nil {
		return nil, err
	}
	return &SetupResult{Kernel: k, ImageDir: c.ImageDir, QEMU: bin}, nil
}
