// Package initramfs builds Linux initramfs images: uncompressed cpio
// archives in the "newc" format the kernel unpacks into its initial root
// file system before it runs /init.
//
// A Builder collects entries (files, directories, symlinks; no device
// nodes: a guest's init mounts devtmpfs) and host programs together with
// the shared libraries they load, and
// writes them in an order the kernel accepts (every directory before what
// it holds). Uncompressed archives are the fastest to boot under software
// emulation: the kernel copies them instead of decompressing them.
//
// A Builder is not safe for concurrent use.
package initramfs

import (
	"fmt"
	"io"
	"strings"
)

// newc header: magic, then 13 eight-digit hex fields.
const (
	magic      = "070701"
	headerSize = 110
	trailer    = "TRAILER!!!"
)

// File modes (the kernel's S_IF* bits).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
)

// writer writes newc entries; it pads every header+name and every body to
// four bytes as the format requires.
type writer struct {
	w   io.Writer
	n   int64 // bytes written
	ino uint32
	err error
}

func (w *writer) write(b []byte) {
	if w.err != nil {
		return
	}
	var n int
	n, w.err = w.w.Write(b)
	w.n += int64(n)
}

func (w *writer) pad() {
	if r := w.n % 4; r != 0 {
		w.write(make([]byte, 4-r))
	}
}

// entry writes one header, name and body; body is copied from r (size
// bytes), or is data when r is nil.
func (w *writer) entry(name string, mode uint32, size int64, data []byte, r io.Reader) error {
	if strings.ContainsRune(name, 0) {
		return fmt.Errorf("initramfs: name %q holds a NUL byte", name)
	}
	if size > 0xffffffff {
		return fmt.Errorf("initramfs: %s is larger than newc's 4 GiB limit", name)
	}
	w.ino++
	nlink := 1
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	// magic ino mode uid gid nlink mtime filesize devmajor devminor
	// rdevmajor rdevminor namesize check
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		magic, w.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	w.write([]byte(hdr))
	w.write(append([]byte(name), 0))
	w.pad()
	if r != nil {
		if w.err == nil {
			var n int64
			n, w.err = io.CopyN(w.w, r, size)
			w.n += n
		}
	} else {
		w.write(data)
	}
	w.pad()
	return w.err
}

func (w *writer) close() error {
	w.ino = 0
	return w.entry(trailer, 0, 0, nil, nil)
}
