//go:build linux

package guest

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Run starts the program path with args and env (stdio inherited from
// PID 1), in dir, and waits for it, reaping every other process that
// exits meanwhile: as PID 1, the init inherits every orphan of the guest.
// It returns the program's exit code (128+signal when a signal killed it).
// Run is meant for a single-threaded caller: it reaps any child.
func Run(path string, args, env []string, dir string) (int, error) {
	p, err := os.StartProcess(path, append([]string{path}, args...), &os.ProcAttr{
		Dir: dir, Env: env, Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
	})
	if err != nil {
		return -1, fmt.Errorf("guest: start %s: %w", path, err)
	}
	defer p.Release()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("guest: wait for %s: %w", path, err)
		}
		if pid != p.Pid {
			continue // an orphan reaped
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus(), nil
		case ws.Signaled():
			return 128 + int(ws.Signal()), nil
		}
	}
}
