// Package disktest gives tests a small disk to run out of: a tmpfs of a
// given size mounted on a temp dir (root only), and a way to fill it.
package disktest

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Small mounts a tmpfs of size (mount's syntax: "64m") on a new temp dir
// and returns the dir. The test is skipped when not root or when the
// mount fails. The unmount is registered before the caller's own
// cleanups, so it runs after them (cleanups run last-registered first):
// a server started on the dir afterwards is stopped before the unmount.
func Small(t testing.TB, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0711"); err != nil {
		t.Skipf("cannot mount a tmpfs of %s: %v", size, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes zeros to a new file at path until its disk is full: in
// 1 MiB writes, then 4 KiB ones for the last partial MiB.
func Fill(t testing.TB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for _, n := range []int{1 << 20, 4096} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				if !errors.Is(err, unix.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
}
