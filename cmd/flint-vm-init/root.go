//go:build linux

package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// RootDevice is the guest's root file system: the read-only image the
// host attaches as the first virtio block device (programs, runtimes,
// /etc; see internal/sandbox/microvm's rootfs).
const RootDevice = "/dev/vda"

// switchRoot mounts RootDevice read-only and makes it the root, moving
// the kernel file systems MountBasics mounted onto it (as switch_root
// does: an initramfs cannot be pivoted away). The init binary stays
// reachable as /proc/self/exe.
func switchRoot(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(RootDevice); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no root device %s after %v", RootDevice, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	const newRoot = "/newroot"
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(RootDevice, newRoot, "ext4", unix.MS_RDONLY|unix.MS_NODEV, "noload"); err != nil {
		return fmt.Errorf("mount %s: %w", RootDevice, err)
	}
	for _, m := range []string{"/dev", "/proc", "/sys", "/run", "/tmp"} {
		if err := unix.Mount(m, newRoot+m, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s to the root image: %w", m, err)
		}
	}
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the root image to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return os.Chdir("/")
}
