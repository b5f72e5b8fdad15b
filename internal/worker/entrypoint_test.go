package worker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEntrypointFailure(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bootstrap"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "noexec"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "adir"), 0o755)
	os.Symlink("/usr/bin/true", filepath.Join(dir, "link"))
	for _, c := range []struct {
		argv []string
		want string // "" for no failure
	}{
		{[]string{"/var/task/bootstrap"}, ""},
		{[]string{"/var/task/missing"}, "Couldn't find valid bootstrap(s): [/var/task/missing /opt/bootstrap]"},
		{[]string{"/var/task/noexec"}, "fork/exec /var/task/noexec: permission denied"},
		{[]string{"/var/task/adir"}, "fork/exec /var/task/adir: permission denied"},
		{[]string{"/var/task/link"}, ""},
		{[]string{"/usr/bin/python3", "-u", "/var/runtime/bootstrap.py"}, ""},
		{nil, ""},
	} {
		fail := entrypointFailure(dir, c.argv)
		if c.want == "" {
			if fail != nil {
				t.Errorf("%v: %s", c.argv, fail("r").payload)
			}
			continue
		}
		if fail == nil {
			t.Errorf("%v: no failure, want %q", c.argv, c.want)
			continue
		}
		f := fail("req-1")
		if f.errorType != ErrorTypeInvalidEntrypoint || !strings.Contains(string(f.payload), c.want) ||
			!strings.Contains(string(f.payload), "RequestId: req-1") || strings.Contains(string(f.payload), dir) {
			t.Errorf("%v: %s %s", c.argv, f.errorType, f.payload)
		}
	}
}

func TestEntrypointFromLayers(t *testing.T) {
	code, opt := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(opt, "bootstrap"), []byte("#!/bin/sh\n"), 0o755)
	if cmd, fail := entrypoint(code, opt, []string{"/var/task/bootstrap"}); fail != nil || cmd[0] != "/opt/bootstrap" {
		t.Errorf("bootstrap in a layer: %v %v", cmd, fail != nil)
	}
	if _, fail := entrypoint(code, "", []string{"/var/task/bootstrap"}); fail == nil {
		t.Error("no bootstrap anywhere: no failure")
	}
	os.WriteFile(filepath.Join(code, "bootstrap"), []byte("#!/bin/sh\n"), 0o755)
	if cmd, fail := entrypoint(code, opt, []string{"/var/task/bootstrap"}); fail != nil || cmd[0] != "/var/task/bootstrap" {
		t.Errorf("the function's own bootstrap first: %v %v", cmd, fail != nil)
	}
}
