package microvm

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flintdev/flint/internal/vm/initramfs"
)

// The guest's root is a read-only ext4 image (the first virtio disk),
// shared by every guest: QEMU opens it read-only, so the host's page cache
// holds one copy for all VMs. It carries what the process driver shows a
// sandbox of the host's /usr, cut down to what runs in a guest: the host
// programs shell bootstraps use, the runtimes' interpreters with their
// libraries and standard libraries, the CA certificates and time zone, and
// a synthesized /etc naming the sandbox user. The function's own
// directories are not in it: they arrive over the channel after boot (or
// after a snapshot restore) into read-only tmpfs mounts.

// DefaultRuntimes are the interpreters put into the root image when the
// host has them: those of the python3.x and nodejs runtimes
// (internal/runtimes), at the same paths.
var DefaultRuntimes = []string{"/usr/bin/python3", "/usr/bin/node"}

// rootEtcPaths are host paths copied into the image when present (the
// certificates are links into /usr/share/ca-certificates).
var rootEtcPaths = []string{"/etc/ssl/certs", "/usr/share/ca-certificates", "/etc/localtime"}

// rootDirs are the image's mount points and empty directories.
var rootDirs = []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/var/task", "/var/runtime", "/opt", "/etc"}

// rootBuilder collects the image's tree.
func rootBuilder(cfg Config) (*initramfs.Builder, error) {
	b := initramfs.New()
	for _, p := range cfg.HostPrograms {
		if err := b.AddHostProgram(p); err != nil {
			return nil, fmt.Errorf("microvm: root image: host program %s: %w", p, err)
		}
	}
	for _, p := range cfg.Runtimes {
		if _, err := os.Stat(p); err != nil {
			continue // not on this host: the runtime is not offered
		}
		if err := b.AddHostProgram(p); err != nil {
			return nil, fmt.Errorf("microvm: root image: runtime %s: %w", p, err)
		}
		if err := addRuntimeLibs(b, p); err != nil {
			return nil, fmt.Errorf("microvm: root image: runtime %s: %w", p, err)
		}
	}
	for _, p := range rootEtcPaths {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := addHostTree(b, p); err != nil {
			return nil, fmt.Errorf("microvm: root image: %w", err)
		}
	}
	uid, gid := strconv.Itoa(cfg.UID), strconv.Itoa(cfg.GID)
	files := map[string]string{
		"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\nsbx_user1051:x:" + uid + ":" + gid + "::/tmp:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/:/sbin/nologin\n",
		"/etc/group":    "root:x:0:\nsbx_user1051:x:" + gid + ":\nnobody:x:65534:\n",
		"/etc/hostname": "sandbox\n",
		"/etc/hosts":    "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost ip6-localhost\n",
		// No DNS server in a guest (no network but loopback): fail fast.
		"/etc/resolv.conf":   "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
		"/etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
	}
	for p, data := range files {
		if err := b.Bytes(p, []byte(data), 0o644); err != nil {
			return nil, fmt.Errorf("microvm: root image: %w", err)
		}
	}
	for _, d := range rootDirs {
		if err := b.Dir(d, 0o755); err != nil {
			return nil, fmt.Errorf("microvm: root image: %w", err)
		}
	}
	return b, nil
}

// addRuntimeLibs adds what an interpreter loads besides its ELF
// libraries: Python's standard library (/usr/lib/pythonX.Y, next to the
// binary's resolved name) with the libraries of its extension modules.
func addRuntimeLibs(b *initramfs.Builder, bin string) error {
	real, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return err
	}
	name := filepath.Base(real)
	if !strings.HasPrefix(name, "python3.") {
		return nil
	}
	std := filepath.Join(filepath.Dir(filepath.Dir(real)), "lib", name)
	if _, err := os.Stat(std); err != nil {
		return nil
	}
	if err := addHostTree(b, std); err != nil {
		return err
	}
	exts, _ := filepath.Glob(filepath.Join(std, "lib-dynload", "*.so"))
	for _, so := range exts {
		if err := b.AddHostProgram(so); err != nil {
			return err
		}
	}
	return nil
}

// addHostTree adds the host path p (resolving the links on its way, as
// AddHostPath) and, when it is a directory, everything under it:
// directories, regular files, and symbolic links as links. Python's
// compiled caches (__pycache__) come too: the image is read-only, and
// without them every cold start would compile each module it imports (a
// stale one is recompiled in memory, as Python checks it against its
// source's time and size, which the image keeps).
func addHostTree(b *initramfs.Builder, p string) error {
	if err := b.AddHostPath(p); err != nil {
		return err
	}
	src, err := filepath.EvalSymlinks(p)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
		return err
	}
	return filepath.WalkDir(src, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if q == src {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		g := path.Clean(filepath.ToSlash(q))
		switch {
		case d.IsDir():
			return b.Dir(g, fi.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(q)
			if err != nil {
				return err
			}
			return b.Symlink(g, t)
		case d.Type().IsRegular():
			return b.File(g, q, fi.Mode().Perm())
		}
		return nil
	})
}

// buildRootfs writes the root image to out unless out.digest says it was
// built from the same tree, and returns the tree's digest. It stages the
// tree in a temporary directory and runs mkfs.ext4 -d (e2fsprogs): no
// mount, no loop device.
func buildRootfs(cfg Config, out string) (string, error) {
	b, err := rootBuilder(cfg)
	if err != nil {
		return "", err
	}
	digest, err := b.Digest()
	if err != nil {
		return "", fmt.Errorf("microvm: root image: %w", err)
	}
	digestFile := out + ".digest"
	if old, err := os.ReadFile(digestFile); err == nil && strings.TrimSpace(string(old)) == digest {
		if _, err := os.Stat(out); err == nil {
			return digest, nil
		}
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return "", fmt.Errorf("microvm: root image: mkfs.ext4 not found (apt-get install e2fsprogs): %w", err)
	}
	size, err := b.Size()
	if err != nil {
		return "", fmt.Errorf("microvm: root image: %w", err)
	}
	stage, err := os.MkdirTemp(filepath.Dir(out), ".rootfs-*")
	if err != nil {
		return "", fmt.Errorf("microvm: root image: %w", err)
	}
	defer os.RemoveAll(stage)
	if err := os.Chmod(stage, 0o755); err != nil {
		return "", fmt.Errorf("microvm: root image: %w", err)
	}
	tree := filepath.Join(stage, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return "", fmt.Errorf("microvm: root image: %w", err)
	}
	if err := b.WriteDir(tree); err != nil {
		return "", fmt.Errorf("microvm: root image: %w", err)
	}
	if err := os.Chmod(tree, 0o755); err != nil {
		return "", fmt.Errorf("microvm: root image: %w", err)
	}
	// Room for the files, their metadata (many small files in a standard
	// library) and ext4's own.
	mib := size*5/4>>20 + 64
	img := filepath.Join(stage, "rootfs.ext4")
	cmd := exec.Command(mkfs, "-q", "-F", "-L", "flint-root", "-d", tree,
		"-O", "^has_journal,^metadata_csum", "-E", "root_owner=0:0", "-m", "0", "-N", "65536",
		img, strconv.FormatInt(mib, 10)+"M")
	if outp, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("microvm: root image: mkfs.ext4: %v: %s", err, strings.TrimSpace(string(outp)))
	}
	if err := os.Chmod(img, 0o644); err != nil {
		return "", fmt.Errorf("microvm: root image: %w", err)
	}
	if err := os.Rename(img, out); err != nil {
		return "", fmt.Errorf("microvm: root image: %w", err)
	}
	if err := os.WriteFile(digestFile, []byte(digest+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("microvm: root image: %w", err)
	}
	return digest, nil
}
