package microvm

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flintdev/flint/internal/vm/initramfs"
	"github.com/flintdev/flint/internal/vm/kernel"
)

// Paths in the guest image (see cmd/flint-vm-init).
const (
	guestModulesList = "/etc/flint/modules"
	guestModulesDir  = "/etc/flint/ko"
)

// buildBase writes the image every guest starts from: the init, the
// virtio modules and the list of them in load order, /etc/passwd and
// /etc/group naming the sandbox user, the host programs and their
// libraries, and the mount points.
func buildBase(out string, cfg Config) error {
	b := initramfs.New()
	if err := b.File("/init", cfg.InitPath, 0o755); err != nil {
		return fmt.Errorf("microvm: guest image: %w", err)
	}
	mods, err := kernel.ResolveModules(cfg.Kernel.ModulesDir, guestModules...)
	if err != nil {
		return fmt.Errorf("microvm: guest image: %w", err)
	}
	var list []string
	for _, m := range mods {
		p := guestModulesDir + "/" + m.Name + ".ko"
		if err := b.File(p, m.Path, 0o644); err != nil {
			return fmt.Errorf("microvm: guest image: %w", err)
		}
		list = append(list, p)
	}
	uid, gid := strconv.Itoa(cfg.UID), strconv.Itoa(cfg.GID)
	files := map[string]string{
		guestModulesList: strings.Join(list, "\n") + "\n",
		"/etc/passwd":    "root:x:0:0:root:/root:/bin/sh\nsbx_user1051:x:" + uid + ":" + gid + "::/tmp:/sbin/nologin\n",
		"/etc/group":     "root:x:0:\nsbx_user1051:x:" + gid + ":\n",
		"/etc/hostname":  "sandbox\n",
	}
	for p, data := range files {
		if err := b.Bytes(p, []byte(data), 0o644); err != nil {
			return fmt.Errorf("microvm: guest image: %w", err)
		}
	}
	for _, p := range cfg.HostPrograms {
		if err := b.AddHostProgram(p); err != nil {
			return fmt.Errorf("microvm: guest image: host program %s: %w", p, err)
		}
	}
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/var"} {
		if err := b.Dir(d, 0o755); err != nil {
			return fmt.Errorf("microvm: guest image: %w", err)
		}
	}
	if _, err := b.WriteFile(out); err != nil {
		return fmt.Errorf("microvm: guest image: %w", err)
	}
	return nil
}

// writeInitrd writes the sandbox's initramfs to out: the base image
// followed by a layer holding the function's directories (the kernel
// unpacks concatenated archives in order). It returns the guest
// directories the init makes read-only.
func writeInitrd(out, base string, dirs map[string]string) ([]string, error) {
	layer := initramfs.New()
	var ro []string
	for guestDir, hostDir := range dirs {
		if hostDir == "" {
			continue
		}
		if err := addTree(layer, guestDir, hostDir); err != nil {
			return nil, err
		}
		ro = append(ro, guestDir)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	in, err := os.Open(base)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	if _, err := io.Copy(f, in); err != nil {
		return nil, err
	}
	if _, err := layer.WriteTo(f); err != nil {
		return nil, err
	}
	return ro, f.Close()
}

// addTree adds the host directory src at dst: directories, regular files
// (with their permission bits) and symbolic links (as links: they resolve
// inside the guest). Other file types are left out.
func addTree(b *initramfs.Builder, dst, src string) error {
	if err := b.Dir(dst, 0o755); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		g := path.Join(dst, filepath.ToSlash(rel))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return b.Dir(g, fi.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return b.Symlink(g, t)
		case d.Type().IsRegular():
			return b.File(g, p, fi.Mode().Perm())
		}
		return nil
	})
}
