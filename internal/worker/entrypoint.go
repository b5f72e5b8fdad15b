package worker

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/flintdev/flint/internal/sandbox"
)

// ErrorTypeInvalidEntrypoint is Lambda's error type for a function whose
// runtime cannot be started from its package (no bootstrap, or one that is
// not executable).
const ErrorTypeInvalidEntrypoint = "Runtime.InvalidEntrypoint"

// entrypoint returns the command a sandbox starts: argv, except that a
// provided runtime's /var/task/bootstrap missing from the function's
// package is looked for in its layers (/opt/bootstrap), as Lambda does.
// fail, when not nil, is the failure the cold invocation reports instead
// (Runtime.InvalidEntrypoint). optDir is the merged layers ("" for none).
func entrypoint(codeDir, optDir string, argv []string) ([]string, func(requestID string) *failure) {
	fail := entrypointFailure(codeDir, argv)
	if fail == nil || optDir == "" || len(argv) == 0 || argv[0] != "/var/task/bootstrap" {
		return argv, fail
	}
	if st, err := os.Stat(filepath.Join(optDir, "bootstrap")); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
		return append([]string{"/opt/bootstrap"}, argv[1:]...), nil
	}
	return argv, fail
}

// entrypointFailure checks, before a sandbox is built, that a command
// taken from the function's own package (/var/task/..., the provided
// runtimes' bootstrap) exists there and is executable. It returns the
// failure the cold invocation reports, as Lambda does, or nil. Symlinks
// are left for the sandbox to resolve.
func entrypointFailure(codeDir string, argv []string) func(requestID string) *failure {
	if len(argv) == 0 {
		return nil
	}
	rel, ok := strings.CutPrefix(argv[0], "/var/task/")
	if !ok {
		return nil
	}
	st, err := os.Lstat(filepath.Join(codeDir, filepath.FromSlash(rel)))
	var reason string
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid):
		reason = "Couldn't find valid bootstrap(s): [" + argv[0] + " /opt/bootstrap]"
	case err != nil:
		return nil // let the sandbox report it
	case st.Mode()&fs.ModeSymlink != 0:
		return nil
	case !st.Mode().IsRegular():
		reason = "fork/exec " + argv[0] + ": permission denied"
	case st.Mode().Perm()&0o111 == 0:
		reason = "fork/exec " + argv[0] + ": permission denied"
	default:
		return nil
	}
	return func(id string) *failure {
		msg := "RequestId: " + id + " Error: " + reason
		return platformFailure(ErrorTypeInvalidEntrypoint, msg, msg+"\n"+ErrorTypeInvalidEntrypoint)
	}
}

// unstarted is the sandbox.Sandbox of a function whose runtime could not
// be started at all: nothing runs, there is nothing to destroy.
type unstarted struct {
	id   string
	done chan struct{}
}

func newUnstarted(id string) *unstarted {
	u := &unstarted{id: id, done: make(chan struct{})}
	close(u.done)
	return u
}

func (u *unstarted) ID() string                       { return u.id }
func (u *unstarted) Done() <-chan struct{}            { return u.done }
func (u *unstarted) Err() error                       { return nil }
func (u *unstarted) SyncOutput(context.Context) error { return nil }
func (u *unstarted) Stats() (sandbox.Stats, error)    { return sandbox.Stats{}, nil }
func (u *unstarted) Destroy(context.Context) error    { return nil }

var _ sandbox.Sandbox = (*unstarted)(nil)
