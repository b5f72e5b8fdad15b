package server

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flintdev/flint"
	"github.com/flintdev/flint/internal/gobuildtest"
)

// TestSiblingInit: the server takes the flint-sandbox-init next to its
// executable only when it was built from the same init source and nobody
// but the server's user can change it; otherwise it re-executes itself
// and says why.
func TestSiblingInit(t *testing.T) {
	ctx := context.Background()
	built := filepath.Join(t.TempDir(), SandboxInitName)
	gobuildtest.Build(t, "github.com/flintdev/flint/cmd/flint-sandbox-init", built)
	elf, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	// dir is a fresh directory holding the server's executable (its name
	// only: siblingInit looks at its directory) and, per case, an init.
	newDir := func(t *testing.T, content []byte, mode os.FileMode) (exe, sib string) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		exe, sib = filepath.Join(dir, "flint"), filepath.Join(dir, SandboxInitName)
		if content != nil {
			if err := os.WriteFile(sib, content, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(sib, mode); err != nil {
				t.Fatal(err)
			}
		}
		return exe, sib
	}
	check := func(t *testing.T, exe, wantPath, wantWhy string) {
		t.Helper()
		path, how := siblingInit(ctx, exe)
		if path != wantPath || !strings.Contains(how, wantWhy) {
			t.Errorf("siblingInit = %q, %q; want %q and a reason containing %q", path, how, wantPath, wantWhy)
		}
	}

	t.Run("same source", func(t *testing.T) {
		exe, sib := newDir(t, elf, 0o755)
		check(t, exe, sib, "same init source")
		out, err := output(sib, "--init-source")
		if err != nil || out != flint.InitSource() {
			t.Errorf("--init-source = %q, %v; want %q", out, err, flint.InitSource())
		}
	})
	t.Run("none", func(t *testing.T) {
		exe, _ := newDir(t, nil, 0)
		check(t, exe, "", "no flint-sandbox-init next to it")
	})
	t.Run("other source", func(t *testing.T) {
		// What an init built from another version prints.
		exe, _ := newDir(t, []byte("#!/bin/sh\necho 0123abcd\n"), 0o755)
		check(t, exe, "", "another version of the init's source")
	})
	t.Run("fails", func(t *testing.T) {
		exe, _ := newDir(t, []byte("#!/bin/sh\nexit 3\n"), 0o755)
		check(t, exe, "", "--init-source failed")
	})
	t.Run("group writable", func(t *testing.T) {
		exe, _ := newDir(t, elf, 0o775)
		check(t, exe, "", "writable by its group or others")
	})
	t.Run("not executable", func(t *testing.T) {
		exe, _ := newDir(t, elf, 0o644)
		check(t, exe, "", "not executable")
	})
	t.Run("a directory", func(t *testing.T) {
		exe, sib := newDir(t, nil, 0)
		if err := os.Mkdir(sib, 0o755); err != nil {
			t.Fatal(err)
		}
		check(t, exe, "", "not a regular file")
	})
	t.Run("directory writable by others", func(t *testing.T) {
		exe, _ := newDir(t, elf, 0o755)
		if err := os.Chmod(filepath.Dir(exe), 0o777); err != nil {
			t.Fatal(err)
		}
		check(t, exe, "", "its directory is writable by its group or others")
	})
	t.Run("another owner", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("chown needs root")
		}
		exe, sib := newDir(t, elf, 0o755)
		if err := os.Chown(sib, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		check(t, exe, "", "owned by uid 65534")
	})
}

// output runs path with args and returns its trimmed standard output.
func output(path string, args ...string) (string, error) {
	out, err := exec.Command(path, args...).Output()
	return strings.TrimSpace(string(out)), err
}
