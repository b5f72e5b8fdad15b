//go:build linux

// Command flint-vm-init is PID 1 of a microVM sandbox (see
// internal/sandbox/microvm and docs/sandbox-microvm.md). It runs only
// inside the guest, never on the host: it mounts the kernel's file
// systems, loads the virtio modules, opens the virtio-serial channel to the
// host (protocol: internal/vm/vmchan), waits for the host's Start, makes
// the function's directories read-only, starts the runtime as an
// unprivileged user in a cgroup of its own, proxies the Runtime API
// (127.0.0.1:9001 in the guest) to the host over the channel, streams the
// runtime's output back, and reports its exit.
//
// Boot steps, in order: console, mounts, modules, the read-only root image
// (the first virtio disk) as the root, loopback, cgroup, channel, then the
// handshake (the host's clock and RNG seed: a guest may be restored from a
// snapshot taken here, see vmchan), and on Start: the function's files
// (over the channel, into read-only tmpfs mounts), /tmp, Runtime API
// listener, runtime.
//
// The same binary, started with the argument ExecArg, is the runtime's
// launcher: it drops every capability from the bounding set, takes the
// runtime's uid and gid, sets no_new_privs and executes the runtime.
package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/flintdev/flint/internal/vm/guest"
)

// ModulesList is the file (one .ko path a line, dependencies first) the
// host writes into the guest image.
const ModulesList = "/etc/flint/modules"

// ExecArg makes this binary the runtime's launcher (see the package doc).
const ExecArg = "--flint-exec-runtime"

func main() {
	if len(os.Args) > 1 && os.Args[1] == ExecArg {
		execRuntime(os.Args[2:]) // never returns
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "flint-vm-init: runs only as PID 1 of a microVM guest")
		os.Exit(2)
	}
	if err := run(); err != nil {
		fmt.Printf("flint-vm-init: %v\n", err)
	}
	if err := guest.Reboot(); err != nil {
		fmt.Printf("flint-vm-init: reboot: %v\n", err)
	}
	select {} // PID 1 must not exit: the kernel would panic
}

func run() error {
	t0 := time.Now()
	if err := guest.ConsoleOnStdio(); err != nil {
		return err
	}
	if err := guest.MountBasics(); err != nil {
		return err
	}
	b, err := os.ReadFile(ModulesList)
	if err != nil {
		return err
	}
	if err := guest.LoadModules(strings.Fields(string(b))); err != nil {
		return err
	}
	if err := switchRoot(10 * time.Second); err != nil {
		return err
	}
	if err := guest.LoopbackUp(); err != nil {
		return err
	}
	// The runtime may not make user namespaces (an unprivileged route to
	// kernel surface a function never needs).
	if err := os.WriteFile("/proc/sys/user/max_user_namespaces", []byte("0"), 0); err != nil {
		return fmt.Errorf("disable user namespaces: %w", err)
	}
	if err := guest.MountCgroup2(cgroupRoot, "memory", "pids"); err != nil {
		return err
	}
	port, err := openPort(10 * time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("flint-vm-init: ready after %v\n", time.Since(t0).Round(time.Millisecond))
	return serve(port)
}
