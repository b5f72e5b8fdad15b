package initramfs

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// libDirs are where AddHostProgram looks for shared libraries (Debian's
// multiarch directories first), after the program's own RUNPATH.
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

type kind int

const (
	kindDir kind = iota
	kindFile
	kindSymlink
)

type entry struct {
	kind   kind
	mode   fs.FileMode // permission bits
	host   string      // kindFile: host file to copy, or "" for data
	data   []byte      // kindFile without host
	target string      // kindSymlink
}

// Builder collects the entries of an initramfs. The zero value is not
// usable; call New.
type Builder struct {
	entries map[string]*entry // by clean absolute path without the leading "/"
	elfSeen map[string]bool   // host programs whose libraries were added
}

// New returns an empty Builder.
func New() *Builder {
	return &Builder{entries: map[string]*entry{}, elfSeen: map[string]bool{}}
}

func key(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("initramfs: path %q is not absolute", p)
	}
	k := strings.TrimPrefix(path.Clean(p), "/")
	if k == "" {
		return "", fmt.Errorf("initramfs: cannot add the root itself")
	}
	return k, nil
}

// put adds e at p, creating missing parent directories (mode 0755). Adding
// the same path twice is fine when both entries agree on the kind (the
// later one wins); otherwise it is an error.
func (b *Builder) put(p string, e *entry) error {
	k, err := key(p)
	if err != nil {
		return err
	}
	if old, ok := b.entries[k]; ok && old.kind != e.kind {
		return fmt.Errorf("initramfs: %s added twice with different types", p)
	}
	for d := path.Dir(k); d != "."; d = path.Dir(d) {
		if old, ok := b.entries[d]; ok {
			if old.kind != kindDir {
				return fmt.Errorf("initramfs: %s: parent /%s is not a directory", p, d)
			}
			continue
		}
		b.entries[d] = &entry{kind: kindDir, mode: 0o755}
	}
	b.entries[k] = e
	return nil
}

// Dir adds a directory.
func (b *Builder) Dir(p string, mode fs.FileMode) error {
	return b.put(p, &entry{kind: kindDir, mode: mode.Perm()})
}

// Bytes adds a file holding data.
func (b *Builder) Bytes(p string, data []byte, mode fs.FileMode) error {
	return b.put(p, &entry{kind: kindFile, mode: mode.Perm(), data: data})
}

// File adds the host file src at p; it is read when the archive is
// written.
func (b *Builder) File(p, src string, mode fs.FileMode) error {
	return b.put(p, &entry{kind: kindFile, mode: mode.Perm(), host: src})
}

// Symlink adds a symbolic link p -> target.
func (b *Builder) Symlink(p, target string) error {
	return b.put(p, &entry{kind: kindSymlink, mode: 0o777, target: target})
}

// AddHostPath adds the host path p at the same path in the archive,
// reproducing the host's symbolic links on the way (on Debian /lib is a
// link to usr/lib, /bin/sh a link to dash): the links and what they point
// to are both added. A directory is added empty.
func (b *Builder) AddHostPath(p string) error {
	_, err := b.addHostPath(p, 0)
	return err
}

// addHostPath returns the host path of the regular file or directory p
// resolves to.
func (b *Builder) addHostPath(p string, depth int) (string, error) {
	if depth > 40 {
		return "", fmt.Errorf("initramfs: %s: too many symbolic links", p)
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("initramfs: host path %q is not absolute", p)
	}
	parts := strings.Split(strings.TrimPrefix(filepath.Clean(p), "/"), "/")
	cur := "/"
	for i, part := range parts {
		next := filepath.Join(cur, part)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", fmt.Errorf("initramfs: add host path: %w", err)
		}
		last := i == len(parts)-1
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(next)
			if err != nil {
				return "", fmt.Errorf("initramfs: add host path: %w", err)
			}
			if err := b.Symlink(next, target); err != nil {
				return "", err
			}
			resolved := target
			if !filepath.IsAbs(target) {
				resolved = filepath.Join(cur, target)
			}
			return b.addHostPath(filepath.Join(append([]string{resolved}, parts[i+1:]...)...), depth+1)
		case fi.IsDir():
			if err := b.Dir(next, fi.Mode()); err != nil {
				return "", err
			}
		case fi.Mode().IsRegular() && last:
			return next, b.File(next, next, fi.Mode())
		default:
			return "", fmt.Errorf("initramfs: %s is neither a directory, a regular file nor a link", next)
		}
		cur = next
	}
	return cur, nil
}

// AddHostProgram adds the host program p (as AddHostPath) and, when it is
// a dynamically linked ELF file, its interpreter and every shared library
// it needs, transitively, at their host paths.
func (b *Builder) AddHostProgram(p string) error {
	real, err := b.addHostPath(p, 0)
	if err != nil {
		return err
	}
	return b.addELFDeps(real)
}

func (b *Builder) addELFDeps(file string) error {
	if b.elfSeen[file] {
		return nil
	}
	b.elfSeen[file] = true
	f, err := elf.Open(file)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) {
			return nil // a script or data: nothing to load
		}
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	var deps []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return fmt.Errorf("initramfs: %s: read interpreter: %w", file, err)
			}
			deps = append(deps, strings.TrimRight(string(b), "\x00"))
		}
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", file, err)
	}
	dirs := libDirs
	if rp, _ := f.DynString(elf.DT_RUNPATH); len(rp) > 0 {
		origin := filepath.Dir(file)
		var own []string
		for _, d := range strings.Split(rp[0], ":") {
			own = append(own, strings.ReplaceAll(d, "$ORIGIN", origin))
		}
		dirs = append(own, dirs...)
	}
	for _, lib := range needed {
		found := ""
		for _, d := range dirs {
			if _, err := os.Stat(filepath.Join(d, lib)); err == nil {
				found = filepath.Join(d, lib)
				break
			}
		}
		if found == "" {
			return fmt.Errorf("initramfs: %s needs %s, not found in %v", file, lib, dirs)
		}
		deps = append(deps, found)
	}
	for _, d := range deps {
		real, err := b.addHostPath(d, 0)
		if err != nil {
			return err
		}
		if err := b.addELFDeps(real); err != nil {
			return err
		}
	}
	return nil
}

// WriteTo writes the archive to w: every entry, parents before children,
// then the trailer. It returns the number of bytes written.
func (b *Builder) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &writer{w: bw}
	keys := make([]string, 0, len(b.entries))
	for k := range b.entries {
		keys = append(keys, k)
	}
	// A parent's path is a prefix of its children's, so it sorts first.
	slices.Sort(keys)
	for _, k := range keys {
		if err := b.writeEntry(cw, k, b.entries[k]); err != nil {
			return cw.n, err
		}
	}
	if err := cw.close(); err != nil {
		return cw.n, err
	}
	return cw.n, bw.Flush()
}

func (b *Builder) writeEntry(cw *writer, k string, e *entry) error {
	perm := uint32(e.mode.Perm())
	if e.mode&fs.ModeSetuid != 0 {
		perm |= 0o4000
	}
	switch e.kind {
	case kindDir:
		return cw.entry(k, modeDir|perm, 0, nil, nil)
	case kindSymlink:
		return cw.entry(k, modeSymlink|0o777, int64(len(e.target)), []byte(e.target), nil)
	}
	if e.host == "" {
		return cw.entry(k, modeRegular|perm, int64(len(e.data)), e.data, nil)
	}
	f, err := os.Open(e.host)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := cw.entry(k, modeRegular|perm, fi.Size(), nil, f); err != nil {
		return fmt.Errorf("initramfs: write %s: %w", k, err)
	}
	return nil
}

// WriteFile writes the archive to the file name (replacing it atomically)
// and returns its size.
func (b *Builder) WriteFile(name string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".initramfs-*")
	if err != nil {
		return 0, fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(tmp.Name())
	n, err := b.WriteTo(tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return n, fmt.Errorf("initramfs: %w", err)
	}
	return n, nil
}
