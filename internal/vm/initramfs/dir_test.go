package initramfs

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWriteDir: the staging tree holds what the archive would, and the
// digest follows the content.
func TestWriteDir(t *testing.T) {
	b := New()
	if err := b.AddHostProgram("/bin/sh"); err != nil {
		t.Fatal(err)
	}
	if err := b.Bytes("/etc/hostname", []byte("sandbox\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.Dir("/var/task", 0o755); err != nil {
		t.Fatal(err)
	}
	d1, err := b.Digest()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "etc/hostname")); err != nil || string(got) != "sandbox\n" {
		t.Errorf("etc/hostname = %q, %v", got, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "var/task")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Errorf("var/task: %v %v", fi, err)
	}
	real, _ := filepath.EvalSymlinks("/bin/sh")
	host, _ := os.ReadFile(real)
	if got, err := os.ReadFile(filepath.Join(dir, real)); err != nil || string(got) != string(host) {
		t.Errorf("%s not copied: %v", real, err)
	}
	if n, err := b.Size(); err != nil || n < int64(len(host)) {
		t.Errorf("Size = %d, %v", n, err)
	}
	if err := b.Bytes("/etc/hostname", []byte("other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d2, _ := b.Digest(); d2 == d1 {
		t.Error("the digest did not change with a file's content")
	}
}

// TestWriteDirKeepsTimes: copies keep their host file's modification
// time.
func TestWriteDirKeepsTimes(t *testing.T) {
	src := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(src, old, old); err != nil {
		t.Fatal(err)
	}
	b := New()
	if err := b.File("/f", src, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "f")); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("copy's time %v (%v), want %v", fi.ModTime(), err, old)
	}
}
