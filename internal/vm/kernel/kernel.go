// Package kernel obtains a Linux kernel for Flint's virtual machines:
// Debian's cloud kernel package, downloaded with apt, unpacked into a cache
// directory that outlives the process, its bzImage turned into an
// uncompressed vmlinux, and its modules indexed so that a guest can load
// them in dependency order (the package ships no modules.dep).
//
// Layout of a cached kernel, <CacheDir>/<package>/:
//
//	vmlinuz        the bzImage as packaged
//	vmlinux        the uncompressed ELF kernel (PVH entry point)
//	config         the kernel's build configuration
//	modules/       lib/modules/<release>/ of the package
//	release        the kernel release ("6.1.0-57-cloud-amd64")
//	ready          written last: the directory is complete
//
// Fetch is safe to call from concurrent processes: they serialise on a
// lock file in CacheDir and only the first downloads.
package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
)

// DefaultPackage is Debian's meta-package for the newest cloud kernel.
const DefaultPackage = "linux-image-cloud-amd64"

// Config configures Fetch.
type Config struct {
	// CacheDir holds the unpacked kernels (required; created if missing).
	CacheDir string
	// Package is the Debian kernel package, a meta-package such as
	// DefaultPackage (resolved to the versioned package it depends on) or a
	// versioned one ("linux-image-6.1.0-57-cloud-amd64"). Empty means
	// DefaultPackage.
	Package string
	// Logger receives progress (nil: discarded).
	Logger *slog.Logger
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.CacheDir == "" || !filepath.IsAbs(c.CacheDir) {
		return fmt.Errorf("kernel: CacheDir %q must be an absolute path", c.CacheDir)
	}
	if c.Package != "" && !validPackage.MatchString(c.Package) {
		return fmt.Errorf("kernel: Package %q is not a Debian linux-image package name", c.Package)
	}
	return nil
}

var (
	validPackage     = regexp.MustCompile(`^linux-image-[a-z0-9.+-]+$`)
	versionedPackage = regexp.MustCompile(`^linux-image-[0-9]`)
	versionRuns      = regexp.MustCompile(`[0-9]+|[^0-9]+`)
)

// Kernel is an unpacked kernel package.
type Kernel struct {
	// Release is the kernel release (uname -r).
	Release string
	// Dir is the package's cache directory.
	Dir string
	// Vmlinux is the uncompressed ELF kernel; Bzimage the packaged one.
	Vmlinux, Bzimage string
	// ModulesDir is lib/modules/<Release> of the package.
	ModulesDir string
}

// DefaultCacheDir is where kernels are cached unless told otherwise:
// $FLINT_VM_CACHE, else flint/vm under the user's cache directory
// ($XDG_CACHE_HOME or ~/.cache), else /var/cache/flint-vm.
func DefaultCacheDir() string {
	if d := os.Getenv("FLINT_VM_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "flint", "vm")
	}
	return "/var/cache/flint-vm"
}

// Open returns the cached kernel in dir, or an error if dir does not hold
// a complete one.
func Open(dir string) (*Kernel, error) {
	if _, err := os.Stat(filepath.Join(dir, "ready")); err != nil {
		return nil, fmt.Errorf("kernel: no complete kernel in %s: %w", dir, err)
	}
	rel, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	return &Kernel{
		Release:    strings.TrimSpace(string(rel)),
		Dir:        dir,
		Vmlinux:    filepath.Join(dir, "vmlinux"),
		Bzimage:    filepath.Join(dir, "vmlinuz"),
		ModulesDir: filepath.Join(dir, "modules"),
	}, nil
}

// Fetch returns the kernel of cfg.Package, downloading and unpacking it
// into cfg.CacheDir the first time. It needs apt-get and dpkg-deb, and apt's
// package lists (apt-get update) for a package not yet cached. When apt
// cannot resolve a meta-package (no lists, no network) it falls back to the
// newest kernel already in the cache.
func Fetch(ctx context.Context, cfg Config) (*Kernel, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Package == "" {
		cfg.Package = DefaultPackage
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	pkg, err := resolve(ctx, cfg.Package)
	if err != nil {
		if k := newestCached(cfg.CacheDir); k != nil {
			log.Warn("kernel: using a cached kernel", "package", cfg.Package, "err", err, "kernel", k.Dir)
			return k, nil
		}
		return nil, err
	}
	dir := filepath.Join(cfg.CacheDir, pkg)
	if k, err := Open(dir); err == nil {
		return k, nil
	}
	unlock, err := lock(filepath.Join(cfg.CacheDir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if k, err := Open(dir); err == nil { // another process fetched it meanwhile
		return k, nil
	}
	log.Info("kernel: downloading", "package", pkg, "cache", cfg.CacheDir)
	if err := download(ctx, pkg, dir); err != nil {
		return nil, err
	}
	return Open(dir)
}

// resolve turns a meta-package into the versioned package it depends on.
func resolve(ctx context.Context, pkg string) (string, error) {
	if versionedPackage.MatchString(pkg) {
		return pkg, nil
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "--important", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("kernel: resolve %s with apt-cache (run apt-get update?): %w", pkg, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: "); ok && versionedPackage.MatchString(dep) {
			return dep, nil
		}
	}
	return "", fmt.Errorf("kernel: %s depends on no versioned linux-image package (run apt-get update?)", pkg)
}

// newestCached returns the newest complete kernel in dir, or nil.
func newestCached(dir string) *Kernel {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if e.IsDir() && versionedPackage.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.SortFunc(names, compareVersions)
	for i := len(names) - 1; i >= 0; i-- {
		if k, err := Open(filepath.Join(dir, names[i])); err == nil {
			return k
		}
	}
	return nil
}

// compareVersions orders package names by their numeric runs, so that
// 6.1.0-57 sorts after 6.1.0-9.
func compareVersions(a, b string) int {
	pa, pb := versionRuns.FindAllString(a, -1), versionRuns.FindAllString(b, -1)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if pa[i] == pb[i] {
			continue
		}
		if pa[i][0] >= '0' && pa[i][0] <= '9' && pb[i][0] >= '0' && pb[i][0] <= '9' {
			if len(pa[i]) != len(pb[i]) {
				return len(pa[i]) - len(pb[i])
			}
		}
		return strings.Compare(pa[i], pb[i])
	}
	return len(pa) - len(pb)
}

// download fetches pkg with apt-get, unpacks it and moves the result to
// dir in one rename.
func download(ctx context.Context, pkg, dir string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".fetch-")
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := run(ctx, tmp, "apt-get", "download", "-q", pkg); err != nil {
		return fmt.Errorf("kernel: download %s (run apt-get update?): %w", pkg, err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("kernel: apt-get download %s left %d .deb files", pkg, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if err := run(ctx, tmp, "dpkg-deb", "-x", debs[0], root); err != nil {
		return fmt.Errorf("kernel: unpack %s: %w", pkg, err)
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return fmt.Errorf("kernel: %s holds %d boot/vmlinuz-* files", pkg, len(vmlinuz))
	}
	release := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	moves := map[string]string{
		vmlinuz[0]: "vmlinuz",
		filepath.Join(root, "boot", "config-"+release): "config",
		filepath.Join(root, "lib", "modules", release): "modules",
	}
	for from, to := range moves {
		if err := os.Rename(from, filepath.Join(out, to)); err != nil {
			return fmt.Errorf("kernel: unpack %s: %w", pkg, err)
		}
	}
	if err := extractVmlinuxFile(filepath.Join(out, "vmlinuz"), filepath.Join(out, "vmlinux")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "release"), []byte(release+"\n"), 0o644); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, "ready"), nil, 0o644); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	_ = os.RemoveAll(dir) // an incomplete earlier attempt
	if err := os.Rename(out, dir); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	return nil
}

func run(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// lock takes an exclusive flock on path, waiting for it.
func lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("kernel: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
