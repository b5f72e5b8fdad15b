package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/flintdev/flint"
)

// SandboxInitName is the small sandbox init's file name
// (cmd/flint-sandbox-init): the server uses the one next to its own
// executable unless --sandbox-init names another.
const SandboxInitName = "flint-sandbox-init"

// defaultSandboxInit is the sandbox init the process driver starts when
// --sandbox-init is not given: SandboxInitName next to this executable
// when it may run as this server's init (see siblingInit), else ""
// (this binary, re-executed). how says which, and why, for the log and
// GET /flint/v1/stats.
func defaultSandboxInit(ctx context.Context) (path, how string) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return "", "this binary, re-executed (its own path is unknown: " + err.Error() + ")"
	}
	return siblingInit(ctx, exe)
}

// siblingInit looks for SandboxInitName in the directory of exe, the
// server's executable. It uses it only when it is safe to run as this
// server's init (it runs with the server's privileges until it drops
// them): a regular executable file owned by the server's user, in a
// directory owned by that user or root, neither writable by anyone else;
// and when it was built from the same init source as this binary
// (flint.InitSource, which it prints when run with --init-source): the
// driver and the init speak a private protocol. Otherwise path is "" and
// how says why.
func siblingInit(ctx context.Context, exe string) (path, how string) {
	const reexec = "this binary, re-executed"
	dir := filepath.Dir(exe)
	p := filepath.Join(dir, SandboxInitName)
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", reexec + " (no " + SandboxInitName + " next to it)"
	}
	if err != nil {
		return "", fmt.Sprintf("%s (%s next to it is unusable: %v)", reexec, SandboxInitName, err)
	}
	if why := unsafeToRun(fi, dir); why != "" {
		return "", fmt.Sprintf("%s (%s next to it is not used: %s)", reexec, p, why)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p, "--init-source")
	cmd.Env = []string{}
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Sprintf("%s (%s next to it is not used: --init-source failed: %v)", reexec, p, err)
	}
	if got := string(bytes.TrimSpace(out)); got != flint.InitSource() {
		return "", fmt.Sprintf("%s (%s next to it is not used: it was built from another version of the init's source; rebuild both: go build -o %s/ ./cmd/flint ./cmd/%s)",
			reexec, p, dir, SandboxInitName)
	}
	return p, p + " (next to this binary, same init source)"
}

// unsafeToRun says why an init binary (fi its Stat, in directory dir)
// must not run with the server's privileges, or "".
func unsafeToRun(fi fs.FileInfo, dir string) string {
	if !fi.Mode().IsRegular() {
		return "not a regular file"
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return "not executable"
	}
	if why := notPrivate(fi, false); why != "" {
		return why
	}
	di, err := os.Stat(dir)
	if err != nil {
		return err.Error()
	}
	if why := notPrivate(di, true); why != "" {
		return "its directory is " + why
	}
	return ""
}

// notPrivate says why someone other than this server's user (or root, if
// rootToo) may change the file or directory fi describes, or "".
func notPrivate(fi fs.FileInfo, rootToo bool) string {
	euid := uint32(os.Geteuid())
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "owned by an unknown user"
	}
	if st.Uid != euid && (!rootToo || st.Uid != 0) {
		return fmt.Sprintf("owned by uid %d, not by this server's uid %d", st.Uid, euid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return "writable by its group or others"
	}
	return ""
}
