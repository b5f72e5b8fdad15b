package microvm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/flintdev/flint/internal/vm/initramfs"
	"github.com/flintdev/flint/internal/vm/kernel"
	"github.com/flintdev/flint/internal/vm/qemu"
)

// Paths in the guest image (see cmd/flint-vm-init).
const (
	guestModulesList = "/etc/flint/modules"
	guestModulesDir  = "/etc/flint/ko"
)

// guestImage is what every guest boots from, kept in Config.ImageDir:
//
//	vmlinux       the kernel (a copy the VMM user can read)
//	base.cpio     the initramfs: the init and the modules it loads
//	rootfs.ext4   the read-only root (rootfs.go): programs, runtimes, /etc
//	rootfs.digest the digest of what rootfs.ext4 was built from
//	snapshots/    idle guests saved after boot (snapshot.go)
//
// digest covers all three, QEMU and the launch settings: the key of the
// snapshots, which are invalid when it changes.
type guestImage struct {
	dir, kernel, initrd, rootfs string
	digest                      string
}

// buildImage brings cfg.ImageDir up to date: it rebuilds what changed
// (the rootfs only when its inputs' digest changed: it takes seconds),
// under a lock so that concurrent processes sharing the directory build
// it once.
func buildImage(cfg Config, qemuBin string, accel qemu.Accel) (*guestImage, error) {
	img := &guestImage{
		dir:    cfg.ImageDir,
		kernel: filepath.Join(cfg.ImageDir, "vmlinux"),
		initrd: filepath.Join(cfg.ImageDir, "base.cpio"),
		rootfs: filepath.Join(cfg.ImageDir, "rootfs.ext4"),
	}
	if err := os.MkdirAll(filepath.Join(cfg.ImageDir, "snapshots"), 0o711); err != nil {
		return nil, fmt.Errorf("microvm: guest image: %w", err)
	}
	for _, d := range []string{cfg.ImageDir, filepath.Join(cfg.ImageDir, "snapshots")} {
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, fmt.Errorf("microvm: guest image: %w", err)
		}
	}
	unlock, err := lockFile(filepath.Join(cfg.ImageDir, ".lock"))
	if err != nil {
		return nil, fmt.Errorf("microvm: guest image: %w", err)
	}
	defer unlock()

	h := sha256.New()
	kd, err := replaceIfChanged(img.kernel, cfg.Kernel.Vmlinux)
	if err != nil {
		return nil, fmt.Errorf("microvm: guest kernel: %w", err)
	}
	fmt.Fprintf(h, "kernel %s %s\n", cfg.Kernel.Release, kd)
	base, err := baseImage(cfg)
	if err != nil {
		return nil, err
	}
	bd, err := writeIfChanged(img.initrd, base)
	if err != nil {
		return nil, fmt.Errorf("microvm: guest image: %w", err)
	}
	fmt.Fprintf(h, "initrd %s\n", bd)
	rd, err := buildRootfs(cfg, img.rootfs)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(h, "rootfs %s\n", rd)
	if fi, err := os.Stat(qemuBin); err == nil {
		fmt.Fprintf(h, "qemu %s %d %d\n", qemuBin, fi.Size(), fi.ModTime().UnixNano())
	}
	fmt.Fprintf(h, "accel %s tcg-cache %d cmdline %q overhead %d warmups %q\n", accel, cfg.TCGCacheMiB, guestCmdline, cfg.GuestOverheadMB, cfg.Warmups)
	img.digest = hex.EncodeToString(h.Sum(nil))[:24]
	return img, nil
}

// guestCmdline is the guest kernel's command line after qemu's base.
var guestCmdline = []string{"quiet", "loglevel=1", "rdinit=/init"}

// baseImage returns the initramfs every guest starts from: the init, the
// virtio modules and the list of them in load order.
func baseImage(cfg Config) ([]byte, error) {
	b := initramfs.New()
	if err := b.File("/init", cfg.InitPath, 0o755); err != nil {
		return nil, fmt.Errorf("microvm: guest image: %w", err)
	}
	mods, err := kernel.ResolveModules(cfg.Kernel.ModulesDir, guestModules...)
	if err != nil {
		return nil, fmt.Errorf("microvm: guest image: %w", err)
	}
	var list []string
	for _, m := range mods {
		p := guestModulesDir + "/" + m.Name + ".ko"
		if err := b.File(p, m.Path, 0o644); err != nil {
			return nil, fmt.Errorf("microvm: guest image: %w", err)
		}
		list = append(list, p)
	}
	if err := b.Bytes(guestModulesList, []byte(strings.Join(list, "\n")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("microvm: guest image: %w", err)
	}
	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("microvm: guest image: %w", err)
	}
	return buf.Bytes(), nil
}

// writeIfChanged makes the file dst hold data (mode 0644), rewriting it
// only when it differs, and returns data's digest.
func writeIfChanged(dst string, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	d := hex.EncodeToString(sum[:])
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
		return d, nil
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return "", err
	}
	return d, os.Rename(tmp, dst)
}

// replaceIfChanged makes dst a copy of src (mode 0644) unless it already
// is one by size and time, and returns an identity of src's content.
func replaceIfChanged(dst, src string) (string, error) {
	sfi, err := os.Stat(src)
	if err != nil {
		return "", err
	}
	id := strconv.FormatInt(sfi.Size(), 10) + "-" + strconv.FormatInt(sfi.ModTime().UnixNano(), 10)
	if dfi, err := os.Stat(dst); err == nil && dfi.Size() == sfi.Size() && dfi.ModTime().Equal(sfi.ModTime()) {
		return id, nil
	}
	if err := copyFile(dst, src, 0o644); err != nil {
		return "", err
	}
	return id, os.Chtimes(dst, sfi.ModTime(), sfi.ModTime())
}

// lockFile takes an exclusive flock on path (created if missing).
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// copyFile copies src to dst (replacing it) with mode perm.
func copyFile(dst, src string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, perm)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}
