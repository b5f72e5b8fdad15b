package process_test

import (
	"log/slog"
	"os"
	"testing"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process"
	"github.com/flintdev/flint/internal/sandbox/process/cgroup"
	"github.com/flintdev/flint/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	process.MaybeRunInit()
	code := m.Run()
	// The sandboxes are gone; their parents are empty now.
	cgroup.RemoveParent(process.DefaultCgroupRoot, testParent)
	cgroup.RemoveParent(process.DefaultCgroupRoot, staleParent)
	os.Exit(code)
}

// newDriver builds a driver on this host or skips the test saying why.
func newDriver(t testing.TB, mutate ...func(*process.Config)) *process.Driver {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("process sandbox tests need root (namespaces, cgroups, mounts)")
	}
	cfg := process.Config{StateDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), CgroupParent: testParent}
	for _, f := range mutate {
		f(&cfg)
	}
	d, err := process.New(cfg)
	if err != nil {
		t.Skipf("process sandbox driver unavailable on this host: %v", err)
	}
	return d
}

func TestConformance(t *testing.T) {
	sandboxtest.Run(t, func(t *testing.T) sandbox.Driver { return newDriver(t) })
}

// TestConformanceInitBinary runs the suite with the dedicated init binary
// as Config.InitPath.
func TestConformanceInitBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the suite already ran with the re-executed test binary")
	}
	sandboxtest.Run(t, func(t *testing.T) sandbox.Driver {
		d := newDriver(t) // skips first if the host cannot run sandboxes
		_ = d
		initPath := buildInitBin(t)
		return newDriver(t, func(c *process.Config) { c.InitPath = initPath })
	})
}
