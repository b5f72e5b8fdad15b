package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/flintdev/flint/internal/sandbox/process/nsinit"
	"github.com/flintdev/flint/internal/vm/vmchan"
)

// resolvRun is where the init writes the host's resolv.conf, bound
// read-only over /etc/resolv.conf (the root image is read-only).
const resolvRun = "/run/flint-resolv.conf"

// setupNet configures the guest's egress device (the virtio-net device
// the host attached, its driver loaded at boot) as the process driver's
// init configures its veth end: address, up, default route, no IPv6; and
// the resolv.conf the host sent.
func setupNet(n *vmchan.Net) error {
	if err := nsinit.SetupNet(&nsinit.Net{Iface: n.Iface, Addr: n.Addr, PrefixLen: n.PrefixLen, Gateway: n.Gateway}); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if n.ResolvConf == "" {
		return nil
	}
	if err := os.WriteFile(resolvRun, []byte(n.ResolvConf), 0o444); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	if err := unix.Mount(resolvRun, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	if err := unix.Mount("", "/etc/resolv.conf", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("resolv.conf read-only: %w", err)
	}
	return nil
}
