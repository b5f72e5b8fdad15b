package gobuildtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestGoToolRuns(t *testing.T) {
	out, err := exec.Command(GoTool(t), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "go version ") {
		t.Fatalf("go version: %q, %v", out, err)
	}
}

func TestBuildPassesFlags(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hello")
	Build(t, "./testdata/hello", bin, "-ldflags=-X main.mark=m1")
	out, err := exec.Command(bin).Output()
	if err != nil || string(out) != "hello m1\n" {
		t.Fatalf("built program printed %q, %v; want the mark set by -ldflags", out, err)
	}
}

func TestCompileReportsCompilerOutput(t *testing.T) {
	err := Compile("./testdata/broken", filepath.Join(t.TempDir(), "broken"))
	if err == nil || !strings.Contains(err.Error(), "undefinedOnPurpose") || !strings.Contains(err.Error(), "./testdata/broken") {
		t.Fatalf("Compile of a broken package: %v, want the package and the compiler's message", err)
	}
}

func TestOnceBuildsOnceAndRemoves(t *testing.T) {
	o := &Once{Pkg: "./testdata/hello", Name: "hi"}
	p := o.Path(t)
	st1, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(p)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("binary's directory: %v, %v; want mode 0755", fi, err)
	}
	if o.Dir(t) != filepath.Dir(p) {
		t.Fatal("second Dir returned another directory")
	}
	st2, err := os.Stat(p)
	if err != nil || !os.SameFile(st1, st2) || !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatalf("binary rebuilt or lost on the second call: %v", err)
	}
	if err := o.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(p)); !os.IsNotExist(err) {
		t.Fatalf("directory still there after Remove: %v", err)
	}
}

func TestOnceDefaultNameAndFailureSticks(t *testing.T) {
	ok := &Once{Pkg: "./testdata/hello"}
	defer ok.Remove()
	if filepath.Base(ok.Path(t)) != "bootstrap" {
		t.Fatalf("default name: %s", ok.Path(t))
	}
	bad := &Once{Pkg: "./testdata/broken"}
	defer bad.Remove()
	for i := range 2 {
		ft := &fakeT{TB: t}
		func() {
			defer func() { recover() }()
			bad.Dir(ft)
		}()
		if !ft.failed || !strings.Contains(ft.msg, "undefinedOnPurpose") {
			t.Fatalf("call %d on a failed build: failed=%v msg=%q", i, ft.failed, ft.msg)
		}
	}
}

// fakeT records Fatal instead of ending the test; it panics to stop the
// caller the way runtime.Goexit would.
type fakeT struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatal(args ...any) {
	f.failed = true
	for _, a := range args {
		if e, ok := a.(error); ok {
			f.msg += e.Error()
		}
	}
	panic("fatal")
}
