package nsinit

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "runtime")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"A=b", "PATH=/nonexistent:" + dir}
	if got, err := lookPath("runtime", env); err != nil || got != exe {
		t.Errorf("lookPath(runtime) = %q, %v", got, err)
	}
	if _, err := lookPath("data", env); err == nil {
		t.Error("lookPath found a non-executable file")
	}
	if got, err := lookPath("/abs/x", env); err != nil || got != "/abs/x" {
		t.Errorf("lookPath(/abs/x) = %q, %v", got, err)
	}
	if _, err := lookPath("runtime", []string{"PATH=/nonexistent"}); err == nil {
		t.Error("lookPath ignored PATH")
	}
}
