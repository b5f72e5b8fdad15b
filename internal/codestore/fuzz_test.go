package codestore

import (
	"archive/zip"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract feeds arbitrary bytes to Extract and checks that it never
// panics, never leaves anything beside the target dir, leaves nothing at
// all on error, and that every symlink it creates stays inside the package.
func FuzzExtract(f *testing.F) {
	f.Add(goodZip(f))
	f.Add(buildZip(f, file("../escaped", "x")))
	f.Add(buildZip(f, symlink("l", "."), symlink("e", "l/.."), file("a/b", "c")))
	f.Add(buildRawZip(f, rawEntry{name: "liar", method: zip.Store, body: make([]byte, 64), claimedSize: 4, claimedCRC32: crc(make([]byte, 4))}))
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	lim := Limits{MaxZipBytes: 1 << 20, MaxUnzippedBytes: 1 << 20, MaxFiles: 200}
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		parent := filepath.Join(base, "parent")
		if err := os.Mkdir(parent, 0o755); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(parent, "out")
		err := Extract(data, dir, lim)
		tree := listTree(t, base)
		if err != nil {
			if len(tree) != 1 || tree[0] != "parent" {
				t.Fatalf("failed Extract (%v) left %q", err, tree)
			}
			return
		}
		for _, p := range tree {
			if p != "parent" && p != "parent/out" && !strings.HasPrefix(p, "parent/out/") {
				t.Fatalf("Extract wrote %q outside its dir", p)
			}
			fi, err := os.Lstat(filepath.Join(base, p))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&os.ModeSymlink != 0 {
				rel := strings.TrimPrefix(p, "parent/out/")
				target, err := os.Readlink(filepath.Join(base, p))
				if err != nil {
					t.Fatal(err)
				}
				if path.IsAbs(target) || !filepath.IsLocal(path.Join(path.Dir(rel), target)) && path.Join(path.Dir(rel), target) != "." {
					t.Fatalf("symlink %s -> %s leaves the package", rel, target)
				}
			} else if m := fi.Mode(); m&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky|0o022) != 0 || !(m.IsDir() || m.IsRegular()) {
				t.Fatalf("%s has mode %v", p, m)
			}
		}
		if verr := Validate(data, lim); verr != nil {
			t.Fatalf("Extract succeeded but Validate says %v", verr)
		}
	})
}
