package microvm

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
)

// readOnlyDirs are the guest directories of dirs (guest path → host
// path) that have a host directory, sorted: those the files stream fills
// and the init makes read-only.
func readOnlyDirs(dirs map[string]string) []string {
	var guest []string
	for g, h := range dirs {
		if h != "" {
			guest = append(guest, g)
		}
	}
	slices.Sort(guest)
	return guest
}

// writeFiles writes the tar archive of the function's directories that
// the guest unpacks (vmchan.TagFiles): each host directory of dirs (guest
// path → host path; "" is skipped) under its guest path, without the
// leading "/". Directories, regular files (with their permission bits)
// and symbolic links (as links: they resolve inside the guest) are sent;
// other file types are left out.
func writeFiles(w io.Writer, dirs map[string]string) error {
	tw := tar.NewWriter(w)
	for _, g := range readOnlyDirs(dirs) {
		if err := addTarTree(tw, g, dirs[g]); err != nil {
			return err
		}
	}
	return tw.Close()
}

func addTarTree(tw *tar.Writer, dst, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(dst, filepath.ToSlash(rel))[1:]
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime(), Format: tar.FormatPAX}
		switch {
		case d.IsDir():
			h.Typeflag = tar.TypeDir
			return tw.WriteHeader(h)
		case d.Type()&fs.ModeSymlink != 0:
			if h.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
			h.Typeflag = tar.TypeSymlink
			return tw.WriteHeader(h)
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			h.Typeflag, h.Size = tar.TypeReg, fi.Size()
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if n, err := io.Copy(tw, f); err != nil || n != fi.Size() {
				return fmt.Errorf("send %s: %d of %d bytes: %v", name, n, fi.Size(), err)
			}
		}
		return nil
	})
}
