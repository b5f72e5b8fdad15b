//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/flintdev/flint/internal/vm/vmchan"
)

// handshake runs the raw-port exchange before yamux (vmchan's hello.go):
// Ready, any warm-ups (each answered with Ready), then the host's Hellos,
// each answered with Ack. A guest restored from a snapshot resumes inside
// its read of the next message.
func handshake(port *os.File) error {
	if _, err := io.WriteString(port, vmchan.Ready); err != nil {
		return fmt.Errorf("write ready: %w", err)
	}
	for hellos := 0; hellos < vmchan.Hellos; {
		m, err := vmchan.ReadHostMessage(port)
		if err != nil {
			return fmt.Errorf("read the host's hello: %w", err)
		}
		switch m := m.(type) {
		case vmchan.Warm:
			warm(m)
			if _, err := io.WriteString(port, vmchan.Ready); err != nil {
				return fmt.Errorf("write ready: %w", err)
			}
		case vmchan.Hello:
			if err := applyHello(m); err != nil {
				return err
			}
			if _, err := io.WriteString(port, vmchan.Ack); err != nil {
				return fmt.Errorf("write ack: %w", err)
			}
			hellos++
		}
	}
	return nil
}

// warm runs the host's warm-up program once, as the sandbox user, with
// no input or output, for at most a minute; its outcome only shows on the
// console (a failed warm-up costs a slower cold start, nothing else).
func warm(w vmchan.Warm) {
	if len(w.Argv) == 0 || w.UID <= 0 || w.GID <= 0 {
		fmt.Printf("flint-vm-init: warm-up %q as %d:%d refused\n", w.Argv, w.UID, w.GID)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.Argv[0], w.Argv[1:]...)
	cmd.Dir, cmd.Env = "/tmp", []string{"PATH=/usr/bin:/bin", "HOME=/tmp"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(w.UID), Gid: uint32(w.GID), Groups: []uint32{}}}
	if err := cmd.Run(); err != nil {
		fmt.Printf("flint-vm-init: warm-up %q: %v\n", w.Argv, err)
	}
}

// applyHello gives the guest its own identity: the host's clock (a
// restored guest's clock stopped when the snapshot was taken), and an RNG
// state no sibling restored from the same snapshot shares: the seed is
// mixed into the input pool (RNDADDENTROPY, credited) and the kernel's
// CRNG reseeded from it at once (RNDRESEEDCRNG; otherwise the per-CPU
// generators keep the snapshot's keys until the next scheduled reseed).
func applyHello(h vmchan.Hello) error {
	ts := unix.NsecToTimespec(h.UnixNano)
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("set the clock: %w", err)
	}
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(h.Seed))
	binary.NativeEndian.PutUint32(info[0:], uint32(8*len(h.Seed)))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(h.Seed)))
	copy(info[8:], h.Seed[:])
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); errno != 0 {
		return fmt.Errorf("seed the RNG: %w", errno)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); errno != 0 {
		return fmt.Errorf("reseed the CRNG: %w", errno)
	}
	return nil
}
