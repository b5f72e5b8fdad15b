// Package nsinit is the code that runs inside a new process sandbox before
// the function's runtime: it is the sandbox's first process (pid 1 of its
// pid namespace, still root), builds the sandbox's root file system, brings
// up loopback, opens the Runtime API listening socket, and finally drops
// every privilege and execs the runtime, which replaces it.
//
// It lives apart from the host side (package process) because it runs in a
// different world: no host environment, a private mount table, no logger.
// It talks to the host only over the socket at file descriptor SockFD
// (SOCK_SEQPACKET, one message per packet, in the binary encoding of
// wire.go):
//
//	host                               init (this package)
//	 │── Config ───────────────────────►│ root tmpfs, host dirs, /etc, /proc,
//	 │   (puts the pid into cgroups)    │ /dev, /tmp, hostname, lo up, listen,
//	 │                                  │ pivot_root (host fs detached)
//	 │◄── Ready (+ listener fd) ────────│
//	 │   ... a pooled sandbox waits     │ (no function known yet)
//	 │── Claim (+ code mount fds) ─────►│ code, /tmp's size, / read-only,
//	 │   (function's cgroup limits)     │ drop privileges, seccomp
//	 │── Go ───────────────────────────►│
//	 │◄── Ready (timings) ──────────────│ execve
//	 │◄── EOF (exec ok) or Ready{Error} │
//
// A claim is one exchange: the host sends Claim and, once the function's
// limits are set, Go, without waiting for the init in between; the init
// waits for Go only right before execve (its claim steps, the privilege
// drop and the seccomp filter done), so the host's work and the init's
// overlap, and nothing of the function runs before both are done. The host
// puts the init into the sandbox's cgroups before it is prepared and does
// not move it at the claim: the init roots its cgroup namespace there
// before Go.
//
// Config carries what every sandbox of the driver shares; Claim carries
// one function's part (its code, /tmp size, command and environment), so
// that the host can prepare sandboxes ahead of need and hand each its
// function later. The host's file system is detached (pivot_root) before
// the sandbox is prepared: the function's code comes with Claim as
// detached, read-only mounts the host cloned (open_tree), which the init
// attaches (move_mount). Nothing of the preparation survives into the
// runtime: it is the same process, which execs the runtime with only
// Claim's environment.
//
// The socket is close-on-exec, so EOF after Go means the runtime runs.
// Any Ready carrying Error ends the exchange.
package nsinit

import "syscall"

// Marker is os.Args[1] of a process started as sandbox init.
const Marker = "__flint_sandbox_init"

// SockFD is the descriptor of the control socket in the init process.
const SockFD = 3

// GoByte is the one-byte message by which the host lets the init exec the
// runtime.
const GoByte = 'G'

// Config is what the init needs to prepare a sandbox, sent by the host
// first.
type Config struct {
	// ID is the sandbox id (used in error messages).
	ID string
	// Root is a host directory on which the init mounts the sandbox's root
	// tmpfs; the mount is private to the sandbox's mount namespace, so all
	// sandboxes can share the same directory.
	Root string
	// Hostname is set in the sandbox's UTS namespace.
	Hostname string
	// Host lists top-level host paths recreated in the sandbox: a symlink
	// when Link is set, else a read-only bind mount of Path.
	Host []HostPath
	// EtcFiles are written into the sandbox's /etc (name → contents).
	EtcFiles map[string]string
	// EtcBinds are host paths under /etc bound read-only at the same place.
	EtcBinds []string
	// DevNodes are names of host /dev character devices recreated (mknod,
	// same device and permissions) in the sandbox's /dev.
	DevNodes []string
	// UID and GID the runtime runs as (never 0).
	UID, GID int
	// NoFile is RLIMIT_NOFILE of the runtime.
	NoFile uint64
	// ListenPort is the Runtime API port on 127.0.0.1 inside the sandbox.
	ListenPort int
	// Seccomp is the classic BPF program installed right before execve.
	Seccomp []syscall.SockFilter
	// Net, when set, configures the interface the host moved into the
	// sandbox for outbound traffic (egress mode); nil leaves only lo.
	Net *Net
}

// Claim is the function's part of a sandbox, sent by the host once the
// init reported the sandbox prepared.
type Claim struct {
	// Mounts are where the mount descriptors that come with the message
	// (in their order) are attached: /var/task (the code, always first),
	// then /var/runtime and /opt when the function has them. Each is a
	// detached, read-only, nosuid, nodev tree (open_tree of the host's
	// directory).
	Mounts []string
	// TmpMB sizes the private /tmp.
	TmpMB int
	// Command and Env are the runtime's argv and complete environment.
	Command, Env []string
}

// HostPath is one top-level path of the host file system.
type HostPath struct {
	Path string
	Link string
}

// Ready is the init's reply: after Config (the sandbox is prepared, with
// the Runtime API listener's fd attached on success), and after Claim and
// Go (the claim's timings just before execve, or an error).
type Ready struct {
	// Error is set when a step failed; Step names it.
	Error string
	Step  string
	// Timings are the init's own step durations.
	Timings []Timing
}

// Timing is the duration of one named init step.
type Timing struct {
	Step  string
	Nanos int64
}
