// Package vmtest is for tests that boot virtual machines: Lock keeps the
// microVM driver's tests of concurrently running test binaries (go test
// ./... runs packages in parallel) to one VM-booting test at a time on the
// machine, so that with TestCgroupV2InVM's guest at most two VMs share a
// small machine's cores. It is meant for tests only.
package vmtest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// LockFile is the machine-wide lock, in the system's temp directory.
var LockFile = filepath.Join(os.TempDir(), "flint-microvm-tests.lock")

// Lock blocks until no other test holds the lock, then holds it until t
// ends.
func Lock(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("vmtest: lock %s: %v", LockFile, err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}
