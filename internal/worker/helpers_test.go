package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/runtimes"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process"
	"github.com/flintdev/flint/internal/sandbox/process/cgroup"
)

func TestMain(m *testing.M) {
	process.MaybeRunInit()
	code := m.Run()
	gofn.Remove()
	// Every sandbox is destroyed; the parent is empty now.
	cgroup.RemoveParent(process.DefaultCgroupRoot, testCgroupParent)
	os.Exit(code)
}

// testCgroupParent groups the sandboxes of this test process (never the
// default "flint", which a server on the host may use).
var testCgroupParent = "flint-test-" + strconv.Itoa(os.Getpid())

// gofn is testdata/gofn built once as "bootstrap".
var gofn = &gobuildtest.Once{Pkg: "./testdata/gofn"}

// goCode returns a directory holding testdata/gofn built as "bootstrap".
func goCode(t *testing.T) string {
	t.Helper()
	return gofn.Dir(t)
}

// dirCode is a test CodeSource: digest → source directory, copied on Unpack.
type dirCode struct {
	mu      sync.Mutex
	dirs    map[string]string // guarded by mu
	unpacks atomic.Int32
}

func (c *dirCode) add(digest, dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dirs == nil {
		c.dirs = map[string]string{}
	}
	c.dirs[digest] = dir
}

func (c *dirCode) Unpack(ctx context.Context, digest, dst string) error {
	c.unpacks.Add(1)
	c.mu.Lock()
	src, ok := c.dirs[digest]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("no code %s", digest)
	}
	// Like codestore.Store.Unpack: an existing dst is a cache hit, and the
	// copy lands atomically.
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	tmp := dst + ".tmp"
	if err := os.CopyFS(tmp, os.DirFS(src)); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// memLogs is a test LogSink.
type memLogs struct {
	mu   sync.Mutex
	logs map[string][]byte // request id → log
}

func (m *memLogs) Append(ctx context.Context, account, function, requestID string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.logs == nil {
		m.logs = map[string][]byte{}
	}
	m.logs[requestID] = append(m.logs[requestID], data...)
	return nil
}

func (m *memLogs) get(id string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logs[id]
}

// openPath makes dir and its parents traversable by the sandbox user.
func openPath(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != os.TempDir() && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

type env struct {
	w    *Worker
	code *dirCode
	logs *memLogs
	cat  *runtimes.Catalog
	drv  string
}

// drivers lists the drivers the worker tests run against.
var drivers = []struct {
	name string
	new  func(t *testing.T) sandbox.Driver
}{
	{"process", func(t *testing.T) sandbox.Driver {
		if os.Geteuid() != 0 {
			t.Skip("process driver needs root (namespaces, cgroups, mounts)")
		}
		d, err := process.New(process.Config{StateDir: t.TempDir(), CgroupParent: testCgroupParent, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Skipf("process driver unavailable on this host: %v", err)
		}
		return d
	}},
	{"host", func(t *testing.T) sandbox.Driver { return hostDriver{} }},
}

func newEnv(t *testing.T, newDriver func(*testing.T) sandbox.Driver, mutate ...func(*Config)) *env {
	t.Helper()
	drv := newDriver(t)
	data := t.TempDir()
	openPath(t, data)
	cat, err := runtimes.New(runtimes.Config{AssetDir: filepath.Join(data, "runtimes")})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{code: &dirCode{}, logs: &memLogs{}, cat: cat, drv: drv.Name()}
	cfg := Config{
		HostID: "host-1", DataDir: data, Driver: drv, Code: e.code, Logs: e.logs, Runtimes: cat,
		MemoryMB: 4096, MaxSandboxes: 8, InitTimeout: 10 * time.Second,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	e.w, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.w.Close(ctx); err != nil {
			t.Errorf("close worker: %v", err)
		}
	})
	return e
}

func function(name, runtime, handler, digest string) *metadata.Function {
	return &metadata.Function{
		Account: "123456789012", Region: "eu-west-1", Name: name, Version: metadata.LatestVersion,
		Runtime: runtime, Handler: handler, MemorySize: 128, Timeout: 5, EphemeralMB: 512,
		CodeDigest: digest, RevisionID: "r1",
	}
}

func (e *env) invoke(t *testing.T, s *Sandbox, id, payload string) invocation.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := s.Invoke(ctx, invocation.Request{RequestID: id, Payload: []byte(payload)})
	if err != nil {
		t.Fatalf("invoke %s: %v", id, err)
	}
	return res
}

func forEachDriver(t *testing.T, f func(t *testing.T, newDriver func(*testing.T) sandbox.Driver)) {
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) { f(t, d.new) })
	}
}

// writeTree creates files under a fresh, world-readable directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	openPath(t, dir)
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func assertOrder(t *testing.T, log string, parts []string) {
	t.Helper()
	pos := 0
	for _, p := range parts {
		i := strings.Index(log[pos:], p)
		if i < 0 {
			t.Fatalf("log lacks %q after offset %d:\n%s", p, pos, log)
		}
		pos += i + len(p)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count fds: %v", err)
	}
	return len(ents)
}
