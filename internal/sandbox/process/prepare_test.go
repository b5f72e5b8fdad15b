package process_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process"
	"github.com/flintdev/flint/internal/sandbox/sandboxtest"
)

// claimingDriver creates every sandbox by Prepare then Claim, so that the
// conformance suite checks claimed sandboxes.
type claimingDriver struct{ *process.Driver }

func (d claimingDriver) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	pr, err := d.Prepare(ctx)
	if err != nil {
		return nil, err
	}
	return pr.Claim(ctx, spec)
}

// TestConformancePrepared runs the whole suite (isolation, limits, OOM,
// fork bomb, destroy, concurrency, failure cleanup, fd and goroutine
// leaks) on sandboxes that were prepared before their function was known.
func TestConformancePrepared(t *testing.T) {
	sandboxtest.Run(t, func(t *testing.T) sandbox.Driver { return claimingDriver{newDriver(t)} })
}

func prepare(t *testing.T, d *process.Driver) sandbox.Prepared {
	t.Helper()
	pr, err := d.Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// poolCgroups lists the cgroups of prepared, unclaimed sandboxes under
// the test parent (by their pids-controller or unified directory).
func poolCgroups(t *testing.T, d *process.Driver) []string {
	t.Helper()
	dir := filepath.Join(process.DefaultCgroupRoot, "pids", testParent)
	if d.CgroupVersion() == 2 {
		dir = filepath.Join(process.DefaultCgroupRoot, testParent)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "pool-") {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// initPid finds the pid of the one process in a prepared sandbox's cgroup.
func initPid(t *testing.T, d *process.Driver, id string) int {
	t.Helper()
	procs := readTrim(t, filepath.Join(cgroupDirs(d.CgroupVersion(), testParent, id)[1], "cgroup.procs"))
	f := strings.Fields(procs)
	if len(f) != 1 {
		t.Fatalf("prepared sandbox %s holds processes %q, want its init alone", id, procs)
	}
	pid, _ := strconv.Atoi(f[0])
	return pid
}

// TestPreparedLifecycle: a prepared sandbox is claimed at most once;
// destroying it unclaimed, or a claim that fails, leaves nothing behind.
func TestPreparedLifecycle(t *testing.T) {
	d := testDriver(t)
	ctx := context.Background()
	gone := func(t *testing.T, id string, pid int) {
		t.Helper()
		for _, dir := range cgroupDirs(d.CgroupVersion(), testParent, id) {
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("cgroup %s left behind (%v)", dir, err)
			}
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("init pid %d still exists", pid)
		}
	}

	t.Run("DestroyUnclaimed", func(t *testing.T) {
		pr := prepare(t, d)
		ids := poolCgroups(t, d)
		if len(ids) != 1 {
			t.Fatalf("pool cgroups %v, want one", ids)
		}
		pid := initPid(t, d, ids[0])
		if pr.MemoryBytes() == 0 {
			t.Error("MemoryBytes() = 0 for a live prepared sandbox")
		}
		if err := pr.Destroy(ctx); err != nil {
			t.Fatal(err)
		}
		if err := pr.Destroy(ctx); err != nil {
			t.Errorf("second Destroy: %v", err)
		}
		<-pr.Done()
		gone(t, ids[0], pid)
		if _, err := pr.Claim(ctx, spec(t, "after-destroy", "/bin/true")); !errors.Is(err, process.ErrClaimed) {
			t.Errorf("Claim after Destroy: %v, want ErrClaimed", err)
		}
	})

	t.Run("FailedClaim", func(t *testing.T) {
		pr := prepare(t, d)
		ids := poolCgroups(t, d)
		pid := initPid(t, d, ids[0])
		id := "badclaim-" + strconv.Itoa(os.Getpid())
		_, err := pr.Claim(ctx, spec(t, id, "/nonexistent/runtime"))
		if err == nil || !strings.Contains(err.Error(), id) {
			t.Fatalf("Claim of a missing runtime: %v, want an error naming %s", err, id)
		}
		gone(t, ids[0], pid)
		gone(t, id, pid)
		if _, err := pr.Claim(ctx, spec(t, id+"-2", "/bin/true")); !errors.Is(err, process.ErrClaimed) {
			t.Errorf("second Claim: %v, want ErrClaimed", err)
		}
	})

	t.Run("DiedBeforeClaim", func(t *testing.T) {
		pr := prepare(t, d)
		ids := poolCgroups(t, d)
		pid := initPid(t, d, ids[0])
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
		<-pr.Done()
		id := "dead-" + strconv.Itoa(os.Getpid())
		if _, err := pr.Claim(ctx, spec(t, id, "/bin/true")); err == nil {
			t.Fatal("claimed a dead prepared sandbox")
		}
		gone(t, ids[0], pid)
		gone(t, id, pid)
	})
}
