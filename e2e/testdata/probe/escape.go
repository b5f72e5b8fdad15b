package main

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// hostFiles tries to read and change host files, directly and through
// /proc/<pid>/root.
func hostFiles(r *Reply, ev Event) {
	for _, p := range ev.Paths {
		for _, q := range []string{p, "/proc/1/root" + p, "/proc/self/root" + p, "/var/task/../../.." + p} {
			b, err := os.ReadFile(q)
			if err == nil {
				r.Found = append(r.Found, q+": "+string(b))
			}
			r.Results["read "+q] = res(err)
		}
	}
	for _, p := range ev.Write {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = f.WriteString("pwned")
			f.Close()
		}
		r.Results["write "+p] = res(err)
		r.Results["chmod "+p] = res(os.Chmod(p, 0o777))
		r.Results["utime "+p] = res(os.Chtimes(p, time.Unix(0, 0), time.Unix(0, 0)))
		r.Results["remove "+p] = res(os.Remove(p))
	}
}

// hunt looks for ev.Secret everywhere it can: the given paths, every
// file of its file system outside /usr and /lib, and every process's
// root, cwd, environment and command line.
func hunt(r *Reply, ev Event) {
	look := func(where string, b []byte) {
		if ev.Secret != "" && strings.Contains(string(b), ev.Secret) {
			r.Found = append(r.Found, where)
		}
	}
	for _, p := range ev.Paths {
		b, err := os.ReadFile(p)
		r.Results["read "+p] = res(err)
		look(p, b)
	}
	files := 0
	filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		switch p {
		case "/proc", "/sys", "/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/dev":
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil // a symlink (/bin -> usr/bin): SkipDir would end the walk of /
		}
		if d.Type().IsRegular() && files < 10000 {
			files++
			if info, err := d.Info(); err == nil && info.Size() < 1<<20 {
				b, _ := os.ReadFile(p)
				look(p, b)
			}
		}
		return nil
	})
	r.Count = files
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		for _, f := range []string{"environ", "cmdline"} {
			b, _ := os.ReadFile(filepath.Join(p, f))
			look(filepath.Join(p, f), b)
		}
		for _, sub := range []string{"root/tmp", "cwd"} {
			ents, _ := os.ReadDir(filepath.Join(p, sub))
			for _, e := range ents {
				b, _ := os.ReadFile(filepath.Join(p, sub, e.Name()))
				look(filepath.Join(p, sub, e.Name()), b)
			}
		}
	}
	r.Results["procs"] = strconv.Itoa(len(procs))
	_, err := unix.SysvShmGet(shmKey, 0, 0)
	r.Results["sysv shm"] = res(err)
	c, err := net.Dial("unix", "@flint-probe-secret")
	if err == nil {
		c.Close()
	}
	r.Results["abstract socket"] = res(err)
}

// shmKey is the SysV shared memory key the victim creates and the
// attacker looks for (another IPC namespace must not have it).
const shmKey = 0x464c4e54

var abstractLn net.Listener

// listenAbstract listens on an abstract unix socket (scoped by the
// network namespace) and keeps it open.
func listenAbstract() error {
	if abstractLn != nil {
		return nil
	}
	ln, err := net.Listen("unix", "@flint-probe-secret")
	if err != nil {
		return err
	}
	abstractLn = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return nil
}

// abi makes system calls through the other ABIs of the CPU, which a
// filter checking only native numbers would let through.
func abi(r *Reply) {
	if haveInt80 {
		// i386: getpid is 20, unshare 310, mount 21.
		for name, nr := range map[string]uintptr{"i386 getpid": 20, "i386 unshare(user)": 310, "i386 mount": 21} {
			a1 := uintptr(0)
			if nr == 310 {
				a1 = unix.CLONE_NEWUSER
			}
			ret := int80(nr, a1, 0, 0)
			if e := -int64(ret); e > 0 && e < 4096 {
				r.Results[name] = errnoRes(syscall.Errno(e))
			} else {
				r.Results[name] = "ok"
			}
		}
		// x32: the native numbers with bit 30 set.
		const x32 = 0x40000000
		_, _, e := syscall.RawSyscall(x32|unix.SYS_GETPID, 0, 0, 0)
		r.Results["x32 getpid"] = errnoRes(e)
		_, _, e = syscall.RawSyscall(x32|unix.SYS_UNSHARE, unix.CLONE_NEWUSER, 0, 0)
		r.Results["x32 unshare(user)"] = errnoRes(e)
	}
}

// kill lists the processes it can see and SIGKILLs pids 1..MaxPid and
// ev.Pids (except itself): Results["killed"] lists those the kernel
// accepted the signal for.
func kill(r *Reply, ev Event) {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var visible []string
	for _, p := range procs {
		b, _ := os.ReadFile(p + "/cmdline")
		visible = append(visible, filepath.Base(p)+":"+strings.ReplaceAll(string(b), "\x00", " "))
	}
	r.Results["visible"] = strings.Join(visible, ", ")
	self := os.Getpid()
	r.Results["self"] = strconv.Itoa(self)
	// kill(2) also takes thread ids: those of our own threads signal us.
	own := map[int]bool{self: true}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			own[tid] = true
		}
	}
	var killed []string
	try := func(pid int) {
		if own[pid] {
			return
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			killed = append(killed, strconv.Itoa(pid))
		} else if pid < 0 || contains(ev.Pids, pid) {
			r.Results[fmt.Sprintf("kill %d", pid)] = res(err)
		}
	}
	for pid := 1; pid <= ev.MaxPid; pid++ {
		try(pid)
	}
	for _, pid := range ev.Pids {
		try(pid)
	}
	r.Results["killed"] = strings.Join(killed, " ")
	// kill(-1) signals every process it may signal (but itself).
	r.Results["kill -1"] = res(syscall.Kill(-1, syscall.SIGKILL))
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func syscalls(r *Reply) {
	exe, _ := os.Executable()
	// A child of our own to trace.
	p, err := os.StartProcess(exe, []string{exe, "child-sleep"}, &os.ProcAttr{})
	if err == nil {
		_, _, e := syscall.RawSyscall6(syscall.SYS_PTRACE, syscall.PTRACE_ATTACH, uintptr(p.Pid), 0, 0, 0, 0)
		r.Results["ptrace attach child"] = errnoRes(e)
		_, _, e = syscall.RawSyscall6(syscall.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(p.Pid), 0, 0, 0, 0)
		r.Results["ptrace seize child"] = errnoRes(e)
		var buf [8]byte
		local := unix.Iovec{Base: &buf[0], Len: 8}
		remote := unix.RemoteIovec{Base: 0x400000, Len: 8}
		_, err := unix.ProcessVMReadv(p.Pid, []unix.Iovec{local}, []unix.RemoteIovec{remote}, 0)
		r.Results["process_vm_readv child"] = res(err)
		p.Kill()
		p.Wait()
	} else {
		r.Results["start child"] = res(err)
	}
	_, _, e := syscall.RawSyscall6(syscall.SYS_PTRACE, syscall.PTRACE_ATTACH, 1, 0, 0, 0, 0)
	r.Results["ptrace attach 1"] = errnoRes(e)
	os.MkdirAll("/tmp/mnt", 0o755)
	r.Results["mount tmpfs"] = res(unix.Mount("none", "/tmp/mnt", "tmpfs", 0, ""))
	r.Results["mount bind /"] = res(unix.Mount("/", "/tmp/mnt", "", unix.MS_BIND, ""))
	r.Results["remount / rw"] = res(unix.Mount("", "/", "", unix.MS_REMOUNT, ""))
	r.Results["umount /proc"] = res(unix.Unmount("/proc", unix.MNT_DETACH))
	r.Results["umount /proc/kcore"] = res(unix.Unmount("/proc/kcore", unix.MNT_DETACH))
	r.Results["chroot"] = res(unix.Chroot("/tmp"))
	r.Results["pivot_root"] = res(unix.PivotRoot("/tmp", "/tmp/mnt"))
	runtime.LockOSThread() // unshare would change only this thread
	for name, flag := range map[string]int{"user": unix.CLONE_NEWUSER, "mnt": unix.CLONE_NEWNS, "net": unix.CLONE_NEWNET, "pid": unix.CLONE_NEWPID} {
		r.Results["unshare "+name] = res(unix.Unshare(flag))
	}
	runtime.UnlockOSThread()
	// clone(2) with CLONE_NEWUSER: how an unprivileged user would gain
	// capabilities (in a new user namespace).
	cp, err := os.StartProcess(exe, []string{exe, "child-whoami"}, &os.ProcAttr{
		Sys: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER},
	})
	if err == nil {
		cp.Wait()
	}
	r.Results["clone newuser"] = res(err)
	ns, err := os.Open("/proc/self/ns/net")
	if err == nil {
		r.Results["setns"] = res(unix.Setns(int(ns.Fd()), 0))
		ns.Close()
	}
	sock := func(name string, domain, typ, proto int) {
		fd, err := unix.Socket(domain, typ, proto)
		if err == nil {
			unix.Close(fd)
		}
		r.Results["socket "+name] = res(err)
	}
	sock("raw icmp", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	sock("raw icmp cloexec", unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	sock("raw6", unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW)
	sock("packet raw", unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	sock("packet dgram", unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ALL)))
	sock("inet SOCK_PACKET", unix.AF_INET, unix.SOCK_PACKET, int(htons(unix.ETH_P_ALL)))
	r.Results["mknod"] = res(unix.Mknod("/tmp/null2", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	r.Results["sethostname"] = res(unix.Sethostname([]byte("pwned")))
	tv := unix.Timeval{Sec: 1}
	r.Results["settimeofday"] = res(unix.Settimeofday(&tv))
	_, _, e = syscall.RawSyscall(unix.SYS_BPF, 0, 0, 0)
	r.Results["bpf"] = errnoRes(e)
	_, _, e = syscall.RawSyscall(unix.SYS_KEYCTL, 0, 0, 0)
	r.Results["keyctl"] = errnoRes(e)
	_, _, e = syscall.RawSyscall(unix.SYS_IO_URING_SETUP, 1, 0, 0)
	r.Results["io_uring_setup"] = errnoRes(e)
	_, _, e = syscall.RawSyscall(unix.SYS_INIT_MODULE, 0, 0, 0)
	r.Results["init_module"] = errnoRes(e)
	_, _, e = syscall.RawSyscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0)
	r.Results["perf_event_open"] = errnoRes(e)
	_, _, e = syscall.RawSyscall(unix.SYS_USERFAULTFD, 0, 0, 0)
	r.Results["userfaultfd"] = errnoRes(e)
	_, _, e = syscall.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
	r.Results["clone3"] = errnoRes(e)
	r.Results["reboot"] = res(unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF))
	r.Results["setuid 0"] = res(unix.Setuid(0))
	_, _, e = syscall.RawSyscall(syscall.SYS_SETRESUID, 0, 0, 0)
	r.Results["setresuid 0"] = errnoRes(e)
	r.Results["chown /var/task/bootstrap"] = res(os.Chown("/var/task/bootstrap", 993, 990))
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
