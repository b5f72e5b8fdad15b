package worker

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// tree writes files (name → content; "->target" makes a symlink, a name
// ending in "/" a directory) under a new directory.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case name[len(name)-1] == '/':
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case len(content) > 2 && content[:2] == "->":
			if err := os.Symlink(content[2:], p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func TestMergeTreesLaterLayerWins(t *testing.T) {
	first := tree(t, map[string]string{
		"python/a.py":      "first a",
		"python/only1.py":  "only in first",
		"lib/x":            "file in first", // becomes a directory in second
		"bin/":             "",              // becomes a symlink in second
		"link":             "->python/a.py", // becomes a file in second
		"nodejs/dir/f.js":  "first f",       // dir/ becomes a file in second
		"nodejs/keep/k.js": "kept",
	})
	second := tree(t, map[string]string{
		"python/a.py":     "second a",
		"lib/x/inner":     "now a directory",
		"bin":             "->python",
		"link":            "now a file",
		"nodejs/dir":      "now a file",
		"python/only2.py": "only in second",
	})
	dst := t.TempDir()
	if err := mergeTrees(dst, []string{first, second}); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(dst, p))
		if err != nil {
			return "ERR " + err.Error()
		}
		return string(b)
	}
	for p, want := range map[string]string{
		"python/a.py": "second a", "python/only1.py": "only in first", "python/only2.py": "only in second",
		"lib/x/inner": "now a directory", "link": "now a file", "nodejs/dir": "now a file", "nodejs/keep/k.js": "kept",
		"bin/a.py": "second a", // through the symlink bin -> python
	} {
		if got := read(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if target, err := os.Readlink(filepath.Join(dst, "bin")); err != nil || target != "python" {
		t.Errorf("bin: %q, %v; want a symlink to python", target, err)
	}
	// Files are hard links of the layers' (same file system), not copies.
	a, _ := os.Stat(filepath.Join(dst, "python/only1.py"))
	b, _ := os.Stat(filepath.Join(first, "python/only1.py"))
	if !os.SameFile(a, b) {
		t.Error("merged file is a copy, not a link")
	}
	// The first layer's tree is untouched by the merge.
	if got, _ := os.ReadFile(filepath.Join(first, "python/a.py")); string(got) != "first a" {
		t.Errorf("first layer changed: %q", got)
	}
}

// A symlink of an earlier layer never makes a later layer's files land
// outside the merged tree.
func TestMergeTreesNeverWritesThroughLinks(t *testing.T) {
	outside := t.TempDir()
	first := tree(t, map[string]string{"python": "->" + outside})
	second := tree(t, map[string]string{"python/evil.py": "x"})
	dst := t.TempDir()
	if err := mergeTrees(dst, []string{first, second}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("merge wrote outside the tree: %v", entries)
	}
	if st, err := os.Lstat(filepath.Join(dst, "python")); err != nil || !st.IsDir() {
		t.Fatalf("python is not a real directory: %v %v", st, err)
	}
}

// BenchmarkMergeTrees merges two layers of 2,000 files of 4 KB each (half
// of the paths shared) the way the worker does (hard links) and, as the
// peer, by copying every file.
func BenchmarkMergeTrees(b *testing.B) {
	layer := func(tag string) string {
		root := b.TempDir()
		data := make([]byte, 4096)
		for i := range 2000 {
			dir := filepath.Join(root, "python", "pkg"+strconv.Itoa(i%20))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			name := "m" + strconv.Itoa(i)
			if i%2 == 0 {
				name += tag
			}
			if err := os.WriteFile(filepath.Join(dir, name+".py"), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		return root
	}
	srcs := []string{layer("a"), layer("b")}
	for _, mode := range []struct {
		name  string
		place func(src, dst string) error
	}{{"link", linkOrCopy}, {"copy", copyFile}} {
		b.Run(mode.name, func(b *testing.B) {
			parent := b.TempDir()
			i := 0
			for b.Loop() {
				dst := filepath.Join(parent, strconv.Itoa(i))
				i++
				if err := os.Mkdir(dst, 0o755); err != nil {
					b.Fatal(err)
				}
				if err := mergeWith(dst, srcs, mode.place); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
