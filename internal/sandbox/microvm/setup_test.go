package microvm_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/sandbox/microvm"
	"github.com/flintdev/flint/internal/vm/kernel"
	"github.com/flintdev/flint/internal/vm/qemu"
)

// TestSetup: Setup builds the guest image into DATA/vm/image, a second
// run rebuilds nothing, and what is missing is said in the user's terms.
func TestSetup(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the guest image")
	}
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Skipf("QEMU is not installed (apt-get install qemu-system-x86): %v", err)
	}
	if _, err := kernel.Fetch(context.Background(), kernel.Config{CacheDir: kernel.DefaultCacheDir()}); err != nil {
		t.Skipf("no guest kernel: %v", err)
	}
	data := t.TempDir()
	if err := os.Chmod(filepath.Dir(data), 0o711); err != nil {
		t.Fatal(err)
	}
	init := filepath.Join(data, "flint-vm-init")
	gobuildtest.Build(t, "github.com/flintdev/flint/cmd/flint-vm-init", init)
	cfg := microvm.SetupConfig{DataDir: data, InitPath: init}
	res, err := microvm.Setup(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.ImageDir != filepath.Join(data, "vm", "image") {
		t.Errorf("image in %s", res.ImageDir)
	}
	before := map[string]os.FileInfo{}
	for _, f := range []string{"vmlinux", "base.cpio", "rootfs.ext4"} {
		fi, err := os.Stat(filepath.Join(res.ImageDir, f))
		if err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o644 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
		before[f] = fi
	}
	if _, err := microvm.Setup(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	for f, fi := range before {
		if now, err := os.Stat(filepath.Join(res.ImageDir, f)); err != nil || !now.ModTime().Equal(fi.ModTime()) {
			t.Errorf("second Setup rewrote %s", f)
		}
	}
	for _, c := range []struct {
		mod  func(*microvm.SetupConfig)
		want string
	}{
		{func(c *microvm.SetupConfig) { c.QEMU = "/nonexistent/qemu" }, "apt-get install --no-install-recommends qemu-system-x86"},
		{func(c *microvm.SetupConfig) { c.InitPath = filepath.Join(data, "missing") }, "flint-vm-init"},
		{func(c *microvm.SetupConfig) { c.DataDir = "relative" }, "absolute"},
	} {
		bad := cfg
		c.mod(&bad)
		if _, err := microvm.Setup(context.Background(), bad); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Setup(%+v) = %v, want an error saying %q", bad, err, c.want)
		}
	}
}
