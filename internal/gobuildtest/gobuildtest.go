// Package gobuildtest builds Go programs for tests: test functions that
// run as Lambda bootstraps, probes and helper binaries that tests start as
// real processes or inside sandboxes.
//
// Every build runs the go command found by GoTool with CGO_ENABLED=0, so
// the binaries are static and run in a sandbox whose root has no C
// library. It is meant for tests only.
package gobuildtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// goTool returns the go command on PATH, else the one of the toolchain
// that built the test binary.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no go tool on PATH or at %s: %w", p, err)
	}
	return p, nil
}

// GoTool returns the path of the go command: the one on PATH, else
// $GOROOT/bin/go of the toolchain that built the test. It fails t if
// there is neither.
func GoTool(t testing.TB) string {
	t.Helper()
	p, err := goTool()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Compile runs `go build -o out [flags] pkg` with CGO_ENABLED=0 in the
// current directory (so pkg may be relative, "./testdata/fn"). The error
// carries pkg and the go command's output. It is Build for callers that
// have no testing.TB, such as TestMain.
//
// Where there is no Go toolchain (a test binary running inside a VM),
// $FLINT_TEST_PREBUILT names a directory of programs built beforehand, each
// at the path of its import path ("<dir>/github.com/flintdev/flint/cmd/x"):
// Compile copies pkg's binary from there (flags are not applied again) and
// fails when it is missing.
func Compile(pkg, out string, flags ...string) error {
	if dir := os.Getenv(PrebuiltEnv); dir != "" {
		return copyPrebuilt(dir, pkg, out)
	}
	goBin, err := goTool()
	if err != nil {
		return fmt.Errorf("build %s: %w", pkg, err)
	}
	args := append(append([]string{"build", "-o", out}, flags...), pkg)
	cmd := exec.Command(goBin, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// PrebuiltEnv names the environment variable that points Compile at
// prebuilt programs instead of the go command.
const PrebuiltEnv = "FLINT_TEST_PREBUILT"

func copyPrebuilt(dir, pkg, out string) error {
	if strings.HasPrefix(pkg, ".") || filepath.IsAbs(pkg) {
		return fmt.Errorf("build %s: $%s is set and only full import paths can be prebuilt", pkg, PrebuiltEnv)
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(pkg)))
	if err != nil {
		return fmt.Errorf("build %s: no go toolchain here and no prebuilt binary: %w", pkg, err)
	}
	if err := os.WriteFile(out, b, 0o755); err != nil {
		return fmt.Errorf("build %s: %w", pkg, err)
	}
	return nil
}

// Build is Compile that fails t on error.
func Build(t testing.TB, pkg, out string, flags ...string) {
	t.Helper()
	if err := Compile(pkg, out, flags...); err != nil {
		t.Fatal(err)
	}
}

// Once builds one program at most once per test process and shares the
// binary between the tests that ask for it. Set Pkg (and Name, Flags)
// before the first call; do not change them afterwards. Its methods are
// safe for concurrent use.
type Once struct {
	Pkg   string   // package to build, as for Compile
	Name  string   // the binary's file name in Dir; "" means "bootstrap"
	Flags []string // extra go build flags

	once sync.Once
	dir  string // set by once; "" if MkdirTemp failed
	err  error  // the build's outcome, set by once
}

// Dir returns a directory (mode 0755, so a sandbox user can enter it)
// holding the binary, building it on the first call. It fails t if the
// build failed; every later caller sees the same failure.
func (o *Once) Dir(t testing.TB) string {
	t.Helper()
	o.once.Do(func() {
		o.dir, o.err = os.MkdirTemp("", "gobuildtest-")
		if o.err != nil {
			return
		}
		if o.err = Compile(o.Pkg, filepath.Join(o.dir, o.name()), o.Flags...); o.err != nil {
			return
		}
		o.err = os.Chmod(o.dir, 0o755)
	})
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.dir
}

// Path returns the binary's path, building it on the first call as Dir
// does.
func (o *Once) Path(t testing.TB) string {
	t.Helper()
	return filepath.Join(o.Dir(t), o.name())
}

func (o *Once) name() string {
	if o.Name == "" {
		return "bootstrap"
	}
	return o.Name
}

// Remove deletes the directory holding the binary, if one was made. Call
// it from TestMain after m.Run; the Once must not be used afterwards.
func (o *Once) Remove() error {
	o.once.Do(func() { o.err = errors.New("gobuildtest: Once used after Remove") })
	if o.dir == "" {
		return nil
	}
	return os.RemoveAll(o.dir)
}
