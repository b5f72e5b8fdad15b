package nsinit

import "syscall"

// in returns p inside the new root.
func (r *runner) in(p string) string { return join(r.cfg.Root, p) }

// buildRoot mounts the root tmpfs and fills it with what every sandbox
// shares: host system directories and /etc.
func (r *runner) buildRoot() error {
	c := r.cfg
	if err := mount("tmpfs", c.Root, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=1m,nr_inodes=4096,mode=0755"); err != nil {
		return wrap("mount root tmpfs", err)
	}
	for _, h := range c.Host {
		if h.Link != "" {
			if err := symlink(h.Link, r.in(h.Path)); err != nil {
				return err
			}
			continue
		}
		if err := bindRO(h.Path, r.in(h.Path), true); err != nil {
			return err
		}
	}
	if err := mkdir(r.in("/etc"), 0o755); err != nil {
		return err
	}
	for name, data := range c.EtcFiles {
		if err := createFile(r.in("/etc/"+name), data, 0o644); err != nil {
			return err
		}
	}
	for _, p := range c.EtcBinds {
		if err := bindRO(p, r.in(p), true); err != nil {
			return err
		}
	}
	return nil
}

// mountCode attaches the function's directories (the detached mounts the
// host sent with the claim) and mounts its /tmp. The root is the sandbox's
// own already (pivotRoot ran when it was prepared) and still writable.
func (r *runner) mountCode() error {
	for i, dst := range r.claim.Mounts {
		fd := r.mountFDs[i]
		if err := mkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := moveMount(fd, dst); err != nil {
			return wrap("attach "+dst, err)
		}
		syscall.Close(fd)
	}
	r.mountFDs = nil
	// /tmp was mounted when the sandbox was prepared; it gets its size.
	if err := mount("", "/tmp", "", syscall.MS_REMOUNT|syscall.MS_NOSUID|syscall.MS_NODEV, "size="+itoa(r.claim.TmpMB)+"m"); err != nil {
		return wrap("size /tmp", err)
	}
	return nil
}

// mountTmp mounts the sandbox's /tmp, still empty and one page small: the
// claim sizes it (a remount costs less on the cold start's path than a
// new file system).
func (r *runner) mountTmp() error {
	p := r.in("/tmp")
	if err := mkdir(p, 0o755); err != nil {
		return err
	}
	if err := mount("tmpfs", p, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=1777,size=4k"); err != nil {
		return wrap("mount /tmp", err)
	}
	return nil
}

// bindRO bind-mounts host path src read-only, nosuid and nodev at dst,
// creating dst (a directory or, for a file, an empty file) first.
func bindRO(src, dst string, create bool) error {
	if create {
		if err := mkTarget(src, dst); err != nil {
			return err
		}
	}
	if err := mount(src, dst, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return wrap("bind "+src, err)
	}
	flags := uintptr(syscall.MS_BIND | syscall.MS_REMOUNT | syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV)
	if err := mount("", dst, "", flags, ""); err != nil {
		return wrap("remount "+src+" read-only", err)
	}
	return nil
}

func mkTarget(src, dst string) error {
	st, err := stat(src)
	if err != nil {
		return wrap("stat "+src, err)
	}
	if err := mkdirAll(dir(dst), 0o755); err != nil {
		return err
	}
	if isDir(&st) {
		err = syscall.Mkdir(dst, 0o755)
	} else {
		var fd int
		if fd, err = syscall.Open(dst, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o644); err == nil {
			err = syscall.Close(fd)
		}
	}
	if err == nil || err == syscall.EEXIST {
		return nil
	}
	return wrap("create "+dst, err)
}

// Paths of /proc hidden behind /dev/null, behind an empty read-only tmpfs,
// or made read-only (as container runtimes do).
var (
	procMaskFiles = []string{"kcore", "keys", "timer_list", "sched_debug", "sysrq-trigger", "latency_stats", "kallsyms", "kmsg", "config.gz", "vmallocinfo"}
	procMaskDirs  = []string{"acpi", "scsi", "asound", "driver"}
	procReadOnly  = []string{"sys", "bus", "fs", "irq"}
)

// mountProc mounts a proc of the sandbox's pid namespace and masks what
// could reveal or change the host.
func (r *runner) mountProc() error {
	p := r.in("/proc")
	if err := mkdir(p, 0o555); err != nil {
		return err
	}
	if err := mount("proc", p, "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return wrap("mount proc", err)
	}
	for _, f := range procMaskFiles {
		dst := join(p, f)
		if err := mount("/dev/null", dst, "", syscall.MS_BIND, ""); err != nil && err != syscall.ENOENT {
			return wrap("mask /proc/"+f, err)
		}
	}
	// One empty read-only tmpfs masks every such directory: the first
	// that exists gets it, the others a bind of it (which keeps its
	// read-only, nosuid, nodev and noexec flags), cheaper than a new file
	// system each.
	empty := ""
	for _, d := range procMaskDirs {
		dst := join(p, d)
		var err error
		if empty == "" {
			err = mount("tmpfs", dst, "tmpfs", syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "size=0")
		} else {
			err = mount(empty, dst, "", syscall.MS_BIND, "")
		}
		if err == syscall.ENOENT {
			continue
		}
		if err != nil {
			return wrap("mask /proc/"+d, err)
		}
		if empty == "" {
			empty = dst
		}
	}
	for _, d := range procReadOnly {
		dst := join(p, d)
		if err := bindRO(dst, dst, false); err != nil && !isErrno(err, syscall.ENOENT) {
			return wrap("/proc/"+d+" read-only", err)
		}
	}
	return nil
}

// buildDev makes a minimal /dev: copies of a few host device nodes, /dev/shm and the
// usual symlinks.
func (r *runner) buildDev() error {
	d := r.in("/dev")
	if err := mkdir(d, 0o755); err != nil {
		return err
	}
	if err := mount("tmpfs", d, "tmpfs", syscall.MS_NOSUID|syscall.MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755"); err != nil {
		return wrap("mount /dev", err)
	}
	if err := mknodLike(d, r.cfg.DevNodes); err != nil {
		return err
	}
	shm := join(d, "shm")
	if err := mkdir(shm, 0o755); err != nil {
		return err
	}
	if err := mount("shm", shm, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "mode=1777,size=64m"); err != nil {
		return wrap("mount /dev/shm", err)
	}
	links := [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}}
	for _, l := range links {
		if err := symlink(l[0], join(d, l[1])); err != nil {
			return err
		}
	}
	// Nothing may be added to /dev from now on.
	return mount("", d, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NOEXEC, "")
}

// mknodLike creates in dir, for each name, a character device node like
// the host's /dev/<name> (same device, same permissions): a node in the
// sandbox's own /dev rather than a bind mount of the host's, which would
// cost a mount at every creation and an unmount at every teardown.
func mknodLike(dir string, names []string) error {
	old := syscall.Umask(0) // the host's permissions, exactly
	defer syscall.Umask(old)
	for _, n := range names {
		src := "/dev/" + n
		st, err := stat(src)
		if err != nil {
			return wrap("stat "+src, err)
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFCHR {
			return wrap(src, syscall.ENODEV)
		}
		if err := syscall.Mknod(join(dir, n), st.Mode&(syscall.S_IFMT|0o777), int(st.Rdev)); err != nil {
			return wrap("mknod "+join(dir, n), err)
		}
	}
	return nil
}

// pivotRoot makes the new root the process's root and detaches the
// host's: from here on the init reaches nothing of the host's file system.
func (r *runner) pivotRoot() error {
	if err := syscall.Chdir(r.cfg.Root); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the old root under the new one; unmounting
	// "." then detaches it without needing a directory for it.
	if err := syscall.PivotRoot(".", "."); err != nil {
		return wrap("pivot_root", err)
	}
	if err := syscall.Unmount(".", syscall.MNT_DETACH); err != nil {
		return wrap("detach old root", err)
	}
	return syscall.Chdir("/")
}

// readOnlyRoot makes the root read-only (only /tmp and /dev/shm stay
// writable).
func readOnlyRoot() error {
	if err := mount("", "/", "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV, ""); err != nil {
		return wrap("remount root read-only", err)
	}
	return nil
}
