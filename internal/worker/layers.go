package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/flintdev/flint/internal/metadata"
)

// The function's /opt: its layers, extracted each into the code cache
// like any package (<data>/code/<digest>), then merged in order into
// <data>/opt/<LayersKey> (later layers win where paths collide, as when
// Lambda extracts them one after the other into /opt). A merged tree is
// built once per layer combination and shared by every sandbox of every
// function using that combination; it is read-only from then on (the
// driver mounts it read-only, nosuid, nodev at /opt, as /var/task). A
// single layer needs no merging: its cache directory is the tree.
//
// Merged trees hard-link the layers' files (the cache and the trees share
// the data dir's file system), so a combination costs inodes, not a copy
// of its bytes; where linking is impossible the file is copied.

// mergePrefix names the temporary directories of merges in progress.
const mergePrefix = ".merge-"

// ensureLayers returns the host directory to mount at /opt for layers
// ("" for none), extracting and merging what is not cached yet.
// Concurrent calls for one combination merge it once.
func (w *Worker) ensureLayers(ctx context.Context, layers []metadata.LayerRef) (string, error) {
	if len(layers) == 0 {
		return "", nil
	}
	srcs := make([]string, len(layers))
	for i, l := range layers {
		dir, err := w.ensureCode(ctx, l.CodeDigest)
		if err != nil {
			return "", fmt.Errorf("layer %s: %w", l.Arn, err)
		}
		srcs[i] = dir
	}
	if len(srcs) == 1 {
		return srcs[0], nil
	}
	key := metadata.LayersKey(layers)
	dir := filepath.Join(w.optDir, key)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	unlock, err := w.lockCode(ctx, "opt/"+key)
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(w.optDir, mergePrefix)
	if err != nil {
		return "", fmt.Errorf("merge layers %s: %w", key, err)
	}
	if err := mergeTrees(tmp, srcs); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("merge layers %s: %w", key, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("merge layers %s: %w", key, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(dir); serr == nil {
			return dir, nil // another process merged it meanwhile
		}
		return "", fmt.Errorf("merge layers %s: %w", key, err)
	}
	return dir, nil
}

// mergeTrees fills dst (an empty directory) with srcs in order: a later
// tree's entry replaces an earlier one's at the same path, except that
// two directories merge. Nothing is ever written through a symlink: every
// parent of a path being written was made a real directory of dst by this
// merge first (the walk visits parents before children), and entries are
// examined with Lstat. The sources are extracted packages, so they hold
// only directories, regular files and relative symlinks that stay inside
// the package.
func mergeTrees(dst string, srcs []string) error { return mergeWith(dst, srcs, linkOrCopy) }

// mergeWith is mergeTrees placing each regular file with place.
func mergeWith(dst string, srcs []string, place func(src, dst string) error) error {
	for _, src := range srcs {
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(src, p)
			if err != nil || rel == "." {
				return err
			}
			target := filepath.Join(dst, rel)
			cur, lerr := os.Lstat(target)
			exists := lerr == nil
			switch {
			case d.IsDir():
				if exists && cur.IsDir() {
					return nil
				}
				if exists {
					if err := os.RemoveAll(target); err != nil {
						return err
					}
				}
				return os.Mkdir(target, 0o755)
			case d.Type()&fs.ModeSymlink != 0:
				link, err := os.Readlink(p)
				if err != nil {
					return err
				}
				if exists {
					if err := os.RemoveAll(target); err != nil {
						return err
					}
				}
				return os.Symlink(link, target)
			case d.Type().IsRegular():
				if exists {
					if err := os.RemoveAll(target); err != nil {
						return err
					}
				}
				return place(p, target)
			}
			return fmt.Errorf("%s: unexpected file type %v", rel, d.Type())
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// linkOrCopy hard-links src at dst, or copies it (keeping its mode) when
// they are on different file systems or links are refused.
func linkOrCopy(src, dst string) error {
	err := os.Link(src, dst)
	if err == nil || !(errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EMLINK)) {
		return err
	}
	return copyFile(src, dst)
}

// copyFile copies src to a new file dst with src's permissions.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
