package initramfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

func (b *Builder) sortedKeys() []string {
	keys := make([]string, 0, len(b.entries))
	for k := range b.entries {
		keys = append(keys, k)
	}
	slices.Sort(keys) // parents first
	return keys
}

// Digest identifies what the builder would write: every path, kind, mode,
// link target and content, where a host file stands for its path, size and
// modification time (so computing it reads no file). Two builders with
// the same digest write the same tree, unless a host file was changed
// without changing its size or time.
func (b *Builder) Digest() (string, error) {
	h := sha256.New()
	for _, k := range b.sortedKeys() {
		e := b.entries[k]
		fmt.Fprintf(h, "%s\x00%d\x00%o\x00%s\x00", k, e.kind, e.mode, e.target)
		switch {
		case e.kind != kindFile:
		case e.host == "":
			h.Write(e.data)
		default:
			fi, err := os.Stat(e.host)
			if err != nil {
				return "", fmt.Errorf("initramfs: %w", err)
			}
			io.WriteString(h, e.host+"\x00"+strconv.FormatInt(fi.Size(), 10)+"\x00"+strconv.FormatInt(fi.ModTime().UnixNano(), 10))
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Size is the total size of the files the builder holds, in bytes.
func (b *Builder) Size() (int64, error) {
	var n int64
	for _, e := range b.entries {
		if e.kind != kindFile {
			continue
		}
		if e.host == "" {
			n += int64(len(e.data))
			continue
		}
		fi, err := os.Stat(e.host)
		if err != nil {
			return 0, fmt.Errorf("initramfs: %w", err)
		}
		n += fi.Size()
	}
	return n, nil
}

// WriteDir writes the entries as a directory tree under dir (which must
// exist and be empty), owned by the caller: the staging tree of a file
// system image. Host files are copied with their modification times
// (Python checks its cached bytecode against its sources' times).
func (b *Builder) WriteDir(dir string) error {
	for _, k := range b.sortedKeys() {
		e := b.entries[k]
		p := filepath.Join(dir, filepath.FromSlash(k))
		var err error
		switch e.kind {
		case kindDir:
			err = os.Mkdir(p, e.mode.Perm())
			if err == nil {
				err = os.Chmod(p, e.mode.Perm()) // past the umask
			}
		case kindSymlink:
			err = os.Symlink(e.target, p)
		case kindFile:
			err = writeHostFile(p, e)
		}
		if err != nil {
			return fmt.Errorf("initramfs: write %s: %w", k, err)
		}
	}
	return nil
}

func writeHostFile(p string, e *entry) error {
	mode := e.mode.Perm()
	if e.mode&fs.ModeSetuid != 0 {
		mode |= fs.ModeSetuid
	}
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if e.host == "" {
		_, err = out.Write(e.data)
	} else {
		var in *os.File
		if in, err = os.Open(e.host); err == nil {
			_, err = io.Copy(out, in)
			in.Close()
		}
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(p, mode)
	}
	if err == nil && e.host != "" {
		var fi os.FileInfo
		if fi, err = os.Stat(e.host); err == nil {
			err = os.Chtimes(p, fi.ModTime(), fi.ModTime())
		}
	}
	return err
}
