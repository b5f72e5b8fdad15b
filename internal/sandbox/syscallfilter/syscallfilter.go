// Package syscallfilter is the seccomp program every Flint sandbox's
// runtime runs under, whatever the driver: the process driver installs it
// in its sandbox init, the microVM driver's guest init in the guest. It
// imports nothing of Flint, so guest code can use it.
package syscallfilter

import (
	"fmt"
	"runtime"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM inside a sandbox: they administer the host,
// escape or inspect other processes, or reach kernel surface a function
// never needs. Most need capabilities the runtime does not have anyway; the
// filter is a second wall.
var deniedSyscalls = []string{
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
	"fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	"unshare", "setns",
	"ptrace", "process_vm_readv", "process_vm_writev",
	"kexec_load", "kexec_file_load", "reboot",
	"init_module", "finit_module", "delete_module",
	"bpf", "perf_event_open", "userfaultfd",
	"keyctl", "add_key", "request_key",
	"clock_settime", "clock_adjtime", "settimeofday", "adjtimex",
	"swapon", "swapoff", "acct", "quotactl",
	"open_by_handle_at", "name_to_handle_at",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"syslog", "vhangup",
}

// namespaceFlags are clone flags creating namespaces; clone with any of
// them fails with EPERM (unshare and setns are denied outright).
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// auditArch is the AUDIT_ARCH_* value of the native system call ABI.
func auditArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, nil
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, nil
	}
	return 0, fmt.Errorf("seccomp: unsupported architecture %s", runtime.GOARCH)
}

// Program assembles the sandbox's seccomp program (callers build it once).
//
// Layout: a hand-written prefix (1) refuses system calls of any foreign ABI
// (e.g. 32-bit int 0x80 calls on amd64, which the library's program would
// let through), (2) refuses raw sockets (socket(_, SOCK_RAW, _)) and
// AF_PACKET sockets; then the library's program denies deniedSyscalls and
// namespace-creating clones with EPERM and clone3 with ENOSYS (its flags
// live in memory a filter cannot read, and libc falls back to clone).
func Program() ([]unix.SockFilter, error) {
	arch, err := auditArch()
	if err != nil {
		return nil, err
	}
	const (
		retErrno = unix.SECCOMP_RET_ERRNO
		ldW      = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq      = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret      = unix.BPF_RET | unix.BPF_K
		and      = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
		offNr    = 0
		offArch  = 4
		offArg0  = 16 // args[0], low 32 bits on little-endian
		offArg1  = 24 // args[1], low 32 bits
	)
	prefix := []unix.SockFilter{
		{Code: ldW, K: offArch},
		{Code: jeq, Jt: 1, Jf: 0, K: arch},
		{Code: ret, K: retErrno | uint32(unix.ENOSYS)},
		{Code: ldW, K: offNr},
		{Code: jeq, Jt: 0, Jf: 6, K: unix.SYS_SOCKET},
		{Code: ldW, K: offArg0},
		{Code: jeq, Jt: 3, Jf: 0, K: unix.AF_PACKET},
		{Code: ldW, K: offArg1},
		{Code: and, K: 0xf},
		{Code: jeq, Jt: 0, Jf: 1, K: unix.SOCK_RAW},
		{Code: ret, K: retErrno | uint32(unix.EPERM)},
	}
	policy := seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{
				Action: seccomp.ActionErrno, // EPERM
				Names:  deniedSyscalls,
				NamesWithCondtions: []seccomp.NameWithConditions{{
					Name:       "clone",
					Conditions: []seccomp.Condition{{Argument: 0, Operation: seccomp.BitsSet, Value: namespaceFlags}},
				}},
			},
			{
				Action: seccomp.Action(uint32(seccomp.ActionErrno) | uint32(unix.ENOSYS)),
				Names:  []string{"clone3"},
			},
		},
	}
	insts, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble policy: %w", err)
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble bpf: %w", err)
	}
	prog := append([]unix.SockFilter(nil), prefix...)
	for _, in := range raw {
		prog = append(prog, unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K})
	}
	if len(prog) > 4096 {
		return nil, fmt.Errorf("seccomp: program too long (%d)", len(prog))
	}
	return prog, nil
}
