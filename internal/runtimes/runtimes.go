// Package runtimes says which Lambda runtimes this host offers and how to
// start each inside a sandbox. The "provided" runtimes run the function's
// own bootstrap (e.g. an aws-lambda-go binary); python3.NN and nodejsNN.x
// run Flint's own runtime clients (see clients/), which New writes to
// Config.AssetDir so that the worker can mount them at /var/runtime.
package runtimes

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/flintdev/flint/internal/runtimes/clients"
)

// Config configures the catalog.
type Config struct {
	// AssetDir is a host directory where the runtime clients are written
	// (created if missing), e.g. <data>/runtimes.
	AssetDir string
	// Python is the interpreter (default /usr/bin/python3). The same path
	// must exist inside sandboxes (the driver bind-mounts /usr).
	Python string
	// Node is the node binary (default /usr/bin/node).
	Node string
}

// Validate reports whether c is usable.
func (c Config) Validate() error {
	if c.AssetDir == "" {
		return fmt.Errorf("runtimes: AssetDir is required")
	}
	return nil
}

// Runtime is one runtime offered by this host. The zero value is not useful.
type Runtime struct {
	// Name is Lambda's identifier, e.g. "python3.11".
	Name string
	// RuntimeDir is the host directory to mount at /var/runtime ("" for
	// the provided runtimes).
	RuntimeDir string
	// Env are extra variables ("K=V") the runtime wants, e.g. NODE_PATH.
	Env  []string
	argv []string
}

// Command is the argv to start inside the sandbox. The handler reaches the
// runtime through _HANDLER, not the command line.
func (r Runtime) Command() []string {
	return append([]string(nil), r.argv...)
}

// Catalog is the set of runtimes of this host. It is immutable and safe for
// concurrent use.
type Catalog struct {
	byName map[string]Runtime
}

var providedNames = []string{"provided", "provided.al2", "provided.al2023"}

// New detects the interpreters (running each once with --version), writes
// the runtime clients to cfg.AssetDir and returns the catalog. A missing
// interpreter is not an error: its runtime is just not offered.
func New(cfg Config) (*Catalog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Python == "" {
		cfg.Python = "/usr/bin/python3"
	}
	if cfg.Node == "" {
		cfg.Node = "/usr/bin/node"
	}
	c := &Catalog{byName: map[string]Runtime{}}
	for _, n := range providedNames {
		c.byName[n] = Runtime{Name: n, argv: []string{"/var/task/bootstrap"}}
	}
	if v, err := detect(cfg.Python, "--version", pythonVersion); err == nil {
		dir := filepath.Join(cfg.AssetDir, "python")
		if err := writeAssets(dir, "python"); err != nil {
			return nil, err
		}
		c.byName[v] = Runtime{
			Name: v, RuntimeDir: dir,
			argv: []string{cfg.Python, "-u", "/var/runtime/bootstrap.py"},
			// Layers' Python packages, where Lambda looks for them.
			Env: []string{"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1",
				"PYTHONPATH=/opt/python/lib/" + v + "/site-packages:/opt/python"},
		}
	}
	if v, err := detect(cfg.Node, "--version", nodeVersion); err == nil {
		dir := filepath.Join(cfg.AssetDir, "node")
		if err := writeAssets(dir, "node"); err != nil {
			return nil, err
		}
		c.byName[v] = Runtime{
			Name: v, RuntimeDir: dir,
			argv: []string{cfg.Node, "/var/runtime/bootstrap.js"},
			// Layers' Node packages, where Lambda looks for them.
			Env: []string{"NODE_PATH=/opt/nodejs/node" + strings.TrimSuffix(strings.TrimPrefix(v, "nodejs"), ".x") +
				"/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task"},
		}
	}
	return c, nil
}

// Names lists the runtimes offered, sorted.
func (c *Catalog) Names() []string {
	out := make([]string, 0, len(c.byName))
	for n := range c.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Lookup returns the runtime called name.
func (c *Catalog) Lookup(name string) (Runtime, bool) {
	r, ok := c.byName[name]
	if ok {
		r.Env = append([]string(nil), r.Env...)
	}
	return r, ok
}

var (
	pythonVersion = regexp.MustCompile(`^Python (3)\.(\d+)`)
	nodeVersion   = regexp.MustCompile(`^v(\d+)\.\d+`)
)

// detect runs bin arg and turns its first output line into a runtime name.
func detect(bin, arg string, re *regexp.Regexp) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, arg).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("run %s %s: %w", bin, arg, err)
	}
	line := strings.TrimSpace(string(bytes.SplitN(out, []byte("\n"), 2)[0]))
	m := re.FindStringSubmatch(line)
	if m == nil {
		return "", fmt.Errorf("%s: unrecognised version %q", bin, line)
	}
	if re == pythonVersion {
		return "python" + m[1] + "." + m[2], nil
	}
	return "nodejs" + m[1] + ".x", nil
}

// writeAssets copies the embedded client for lang into dir, replacing files
// atomically so that sandboxes starting concurrently never see a partial
// file.
func writeAssets(dir, lang string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("runtimes: %w", err)
	}
	return fs.WalkDir(clients.FS, lang, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(clients.FS, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, strings.TrimPrefix(p, lang+"/"))
		if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
			return nil
		}
		tmp, err := os.CreateTemp(dir, ".tmp-*")
		if err != nil {
			return fmt.Errorf("runtimes: %w", err)
		}
		defer os.Remove(tmp.Name())
		if _, err := tmp.Write(data); err != nil {
			tmp.Close()
			return fmt.Errorf("runtimes: write %s: %w", dst, err)
		}
		if err := tmp.Chmod(0o644); err != nil {
			tmp.Close()
			return fmt.Errorf("runtimes: %w", err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("runtimes: %w", err)
		}
		if err := os.Rename(tmp.Name(), dst); err != nil {
			return fmt.Errorf("runtimes: install %s: %w", dst, err)
		}
		return nil
	})
}
