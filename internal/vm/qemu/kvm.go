package qemu

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for one writer and many readers.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ProbeKVM reports whether kernel boots under KVM on this host, and why
// not when it does not. It boots kernel under KVM with -cpu host and no
// initramfs: a kernel that gets as far as looking for its root file system
// (and then panics, ending QEMU) proves KVM works. It fails fast where
// /dev/kvm is missing or QEMU cannot start a KVM vCPU (on a PVM host: "failed
// to set MSR 0x10a"), and gives up after timeout where the guest crawls.
func ProbeKVM(binary, kernel string, timeout time.Duration) (bool, string) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false, "no /dev/kvm"
	}
	var console, stderr lockedBuffer
	vm, err := Start(Config{
		Binary: binary, Kernel: kernel, Accel: KVM, MemoryMiB: 128,
		Cmdline: []string{"loglevel=4"}, Console: &console, Stderr: &stderr,
	})
	if err != nil {
		return false, err.Error()
	}
	defer vm.Kill()
	booted := func() bool {
		s := console.String()
		return strings.Contains(s, "VFS: Unable to mount root") || strings.Contains(s, "Kernel panic")
	}
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-vm.Done():
			if booted() {
				return true, ""
			}
			return false, fmt.Sprintf("QEMU exited before the kernel booted: %s", strings.TrimSpace(stderr.String()))
		case <-deadline:
			return false, fmt.Sprintf("the kernel did not boot under KVM within %v", timeout)
		case <-tick.C:
			if booted() {
				return true, ""
			}
		}
	}
}
