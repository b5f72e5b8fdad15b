package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/cli"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process"
)

func TestMain(m *testing.M) {
	process.MaybeRunInit()
	os.Exit(m.Run())
}

// TestCleanupKilledServer: the sandboxes of a server that died without
// destroying them (one running, one prepared for its pool) keep their
// cgroups; `flint server --cleanup --data DIR`
// kills what still runs in them and removes them and their parent, and
// refuses while a server holds DIR.
func TestCleanupKilledServer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the process sandbox needs root")
	}
	ctx := context.Background()
	data := t.TempDir()
	digest := sha256.Sum256([]byte(data))
	parent := "flint-" + hex.EncodeToString(digest[:6]) // as the server names it
	// The "server": a driver on data's parent that creates a sandbox, then
	// dies (no Destroy, no Close).
	d, err := process.New(process.Config{
		StateDir: filepath.Join(data, "sandboxes"), CgroupParent: parent,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Skipf("process sandbox driver unavailable on this host: %v", err)
	}
	code := t.TempDir()
	if err := os.Chmod(code, 0o755); err != nil {
		t.Fatal(err)
	}
	sb, err := d.Create(ctx, sandbox.Spec{
		ID: "left-1", CodeDir: code, Command: []string{"/bin/sleep", "600"},
		Env: []string{"PATH=/usr/bin:/bin"}, RuntimeAPI: http.NotFoundHandler(), Output: io.Discard,
		MemoryMB: 128, EphemeralStorageMB: 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Destroy(ctx) })
	// And one prepared for its pool, never claimed.
	pr, err := d.Prepare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Destroy(ctx) })
	var dirs []string
	for _, sub := range []string{"", "unified", "memory", "pids", "cpu"} {
		if p := filepath.Join(process.DefaultCgroupRoot, sub, parent); exists(p) {
			dirs = append(dirs, p)
		}
	}
	if len(dirs) == 0 {
		t.Fatalf("no cgroup parent %s found", parent)
	}

	// While a server runs on data (it holds the lock), --cleanup refuses.
	lock, err := os.OpenFile(filepath.Join(data, "server.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	out, code1 := flint(ctx, "server", "--cleanup", "--data", data)
	if code1 == 0 || !strings.Contains(out, "another Flint server is running") {
		t.Errorf("--cleanup with a running server: exit %d, output %q", code1, out)
	}
	lock.Close()
	if !exists(dirs[0]) {
		t.Fatal("the refused --cleanup removed cgroups")
	}

	out, code2 := flint(ctx, "server", "--cleanup", "--data", data)
	if code2 != 0 || !strings.Contains(out, "removed 2 sandbox cgroups") {
		t.Fatalf("--cleanup: exit %d, output %q", code2, out)
	}
	for _, p := range dirs {
		if exists(p) {
			t.Errorf("%s survives --cleanup", p)
		}
	}
	for _, done := range []<-chan struct{}{sb.Done(), pr.Done()} {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("a left sandbox still runs after --cleanup")
		}
	}
}

func flint(ctx context.Context, args ...string) (string, int) {
	var out bytes.Buffer
	code := cli.Main(ctx, args, &out, &out)
	return out.String(), code
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
