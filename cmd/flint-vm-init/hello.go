//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/flintdev/flint/internal/vm/vmchan"
)

// handshake runs the raw-port exchange before yamux (vmchan's hello.go):
// Ready, the host's Hello, Ack. A guest restored from a snapshot resumes
// inside the read of the Hello.
func handshake(port *os.File) error {
	if _, err := io.WriteString(port, vmchan.Ready); err != nil {
		return fmt.Errorf("write ready: %w", err)
	}
	buf := make([]byte, vmchan.HelloSize)
	for range vmchan.Hellos {
		if _, err := io.ReadFull(port, buf); err != nil {
			return fmt.Errorf("read the host's hello: %w", err)
		}
		h, err := vmchan.ParseHello(buf)
		if err != nil {
			return err
		}
		if err := applyHello(h); err != nil {
			return err
		}
		if _, err := io.WriteString(port, vmchan.Ack); err != nil {
			return fmt.Errorf("write ack: %w", err)
		}
	}
	return nil
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
