package initramfs

import (
	"io/fs"
	"slices"
)

// Walk calls fn for every entry, parents before children, with its
// absolute path, its mode (fs.ModeDir or fs.ModeSymlink set for those
// kinds), the host file a regular file is copied from ("" for one built
// from bytes) and a symbolic link's target. It lets a caller lay out the
// same tree elsewhere than in an archive (the VMM jail bind-mounts each
// host file). fn's error stops the walk and is returned.
func (b *Builder) Walk(fn func(path string, mode fs.FileMode, hostFile, linkTarget string) error) error {
	keys := make([]string, 0, len(b.entries))
	for k := range b.entries {
		keys = append(keys, k)
	}
	slices.Sort(keys) // a parent's path is a prefix of its children's
	for _, k := range keys {
		e := b.entries[k]
		mode := e.mode
		switch e.kind {
		case kindDir:
			mode |= fs.ModeDir
		case kindSymlink:
			mode |= fs.ModeSymlink
		}
		if err := fn("/"+k, mode, e.host, e.target); err != nil {
			return err
		}
	}
	return nil
}
