package kernel

import (
	"bytes"
	"context"
	"os"
	"slices"
	"testing"
)

func TestParseModinfoDepends(t *testing.T) {
	for in, want := range map[string][]string{
		"license=GPL\x00depends=virtio,virtio_ring\x00name=virtio_blk\x00": {"virtio", "virtio_ring"},
		"depends=\x00name=virtio\x00":                                      nil,
		"name=x\x00":                                                       nil,
		"depends=nf-tables, libcrc32c":                                     {"nf_tables", "libcrc32c"},
	} {
		if got := ParseModinfoDepends([]byte(in)); !slices.Equal(got, want) {
			t.Errorf("ParseModinfoDepends(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseModinfoDepends(f *testing.F) {
	f.Add([]byte("depends=a,b\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, d := range ParseModinfoDepends(b) {
			if d == "" || bytes.ContainsAny([]byte(d), ",\x00-") {
				t.Fatalf("bad dependency name %q", d)
			}
		}
	})
}

func FuzzExtractVmlinux(f *testing.F) {
	bz := make([]byte, 0x400)
	copy(bz[0x202:], "HdrS")
	f.Add(bz)
	f.Fuzz(func(t *testing.T, b []byte) {
		if out, err := ExtractVmlinux(b); err == nil && !bytes.HasPrefix(out, []byte("\x7fELF")) {
			t.Fatal("accepted a payload that is not ELF")
		}
	})
}

func TestCompareVersions(t *testing.T) {
	names := []string{"linux-image-6.1.0-57-cloud-amd64", "linux-image-6.1.0-9-cloud-amd64", "linux-image-6.12.100+deb12-cloud-amd64"}
	slices.SortFunc(names, compareVersions)
	want := []string{"linux-image-6.1.0-9-cloud-amd64", "linux-image-6.1.0-57-cloud-amd64", "linux-image-6.12.100+deb12-cloud-amd64"}
	if !slices.Equal(names, want) {
		t.Errorf("sorted %q, want %q", names, want)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{}, {CacheDir: "rel"}, {CacheDir: "/x", Package: "bash"}, {CacheDir: "/x", Package: "linux-image-x; rm"}} {
		if c.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
}

// TestDebianKernel fetches (or finds cached) Debian's cloud kernel: its
// vmlinux is the bzImage's payload, and its virtio modules resolve in
// dependency order.
func TestDebianKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: downloads a kernel package the first time")
	}
	k, err := Fetch(context.Background(), Config{CacheDir: DefaultCacheDir()})
	if err != nil {
		t.Skipf("no Debian kernel to be had here (apt-get, dpkg-deb and package lists needed): %v", err)
	}
	bz, err := os.ReadFile(k.Bzimage)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := ExtractVmlinux(bz)
	if err != nil {
		t.Fatal(err)
	}
	cached, err := os.ReadFile(k.Vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(vm, cached) {
		t.Errorf("vmlinux (%d bytes) differs from the bzImage's payload (%d bytes)", len(cached), len(vm))
	}
	mods, err := ResolveModules(k.ModulesDir, "virtio_blk", "virtio-console", "virtio_mmio")
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range mods {
		pos[m.Name] = i
	}
	for _, name := range []string{"virtio", "virtio_ring", "virtio_blk", "virtio_console", "virtio_mmio"} {
		if _, ok := pos[name]; !ok {
			t.Errorf("%s missing from %v", name, mods)
		}
	}
	for i, m := range mods {
		for _, d := range m.Depends {
			if j, ok := pos[d]; !ok || j >= i {
				t.Errorf("%s (at %d) needs %s, at %d", m.Name, i, d, j)
			}
		}
	}
	if len(mods) != len(pos) {
		t.Errorf("duplicates in %v", mods)
	}
	if _, err := ResolveModules(k.ModulesDir, "no_such_module"); err == nil {
		t.Error("an unknown module resolved")
	}
	if ms, err := ResolveModules(k.ModulesDir, "ext4"); err != nil || len(ms) != 0 {
		t.Errorf("built-in ext4 resolved to %v, %v; want nothing to load", ms, err)
	}
}
