package runtimes

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCatalogDetection(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{AssetDir: dir, Python: "/nonexistent/python3", Node: "/nonexistent/node"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Names(), []string{"provided", "provided.al2", "provided.al2023"}; !slices.Equal(got, want) {
		t.Fatalf("names without interpreters %v, want %v", got, want)
	}
	r, ok := c.Lookup("provided.al2023")
	if !ok || r.RuntimeDir != "" || !slices.Equal(r.Command(), []string{"/var/task/bootstrap"}) {
		t.Fatalf("provided.al2023 = %+v %v", r, r.Command())
	}
	if _, ok := c.Lookup("python3.11"); ok {
		t.Fatal("python offered without an interpreter")
	}
}

func TestCatalogHostInterpreters(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{AssetDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	names := c.Names()
	if !slices.IsSorted(names) {
		t.Fatalf("names not sorted: %v", names)
	}
	checked := 0
	for _, n := range names {
		r, _ := c.Lookup(n)
		switch {
		case strings.HasPrefix(n, "python3."):
			checked++
			if _, err := os.Stat(filepath.Join(r.RuntimeDir, "bootstrap.py")); err != nil {
				t.Errorf("%s: client not written: %v", n, err)
			}
			if cmd := r.Command(); cmd[len(cmd)-1] != "/var/runtime/bootstrap.py" {
				t.Errorf("%s: command %v", n, cmd)
			}
		case strings.HasPrefix(n, "nodejs"):
			checked++
			if !strings.HasSuffix(n, ".x") {
				t.Errorf("bad node runtime name %q", n)
			}
			if _, err := os.Stat(filepath.Join(r.RuntimeDir, "bootstrap.js")); err != nil {
				t.Errorf("%s: client not written: %v", n, err)
			}
		}
	}
	if _, err := os.Stat("/usr/bin/python3"); err == nil && !slices.ContainsFunc(names, func(s string) bool { return strings.HasPrefix(s, "python3.") }) {
		t.Errorf("python3 present but not offered: %v", names)
	}
	if _, err := os.Stat("/usr/bin/node"); err == nil && !slices.ContainsFunc(names, func(s string) bool { return strings.HasPrefix(s, "nodejs") }) {
		t.Errorf("node present but not offered: %v", names)
	}
	if checked == 0 {
		t.Skip("neither python3 nor node on this host")
	}
	// Writing again (a restart) keeps the same files.
	if _, err := New(Config{AssetDir: dir}); err != nil {
		t.Fatal(err)
	}
}
