package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/flintdev/flint/internal/sandbox/process"
)

// lockName is the file in the data dir a running server holds an
// exclusive flock on; the kernel releases it when the server dies, however
// it dies.
const lockName = "server.lock"

// errDataDirBusy reports that a server runs on the data dir.
var errDataDirBusy = errors.New("another Flint server is running on this data dir")

// lockDataDir takes the data dir's lock without waiting; unlock releases
// it.
func lockDataDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server: data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("server: %s: %w", dir, errDataDirBusy)
		}
		return nil, fmt.Errorf("server: data dir lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// Cleanup removes what a server on dataDir left on this host when it was
// killed and never started again: the cgroups of its sandboxes (killing
// any process still in them) and their parent. A server does the same by
// itself when it starts on dataDir, so Cleanup is for a data dir that will
// not be used again. It refuses while a server runs on dataDir, and
// returns how many sandbox cgroups it removed.
func Cleanup(ctx context.Context, dataDir string, log *slog.Logger) (int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return 0, fmt.Errorf("server: cleanup: %w", err)
	}
	if _, err := os.Stat(dir); err != nil {
		return 0, fmt.Errorf("server: cleanup: data dir: %w", err)
	}
	unlock, err := lockDataDir(dir)
	if err != nil {
		return 0, err
	}
	defer unlock()
	d, err := process.New(sandboxDriverConfig(dir, "", nil, log))
	if err != nil {
		return 0, fmt.Errorf("server: cleanup: %w", err)
	}
	n, err := d.RemoveStale(ctx)
	if cerr := d.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("server: cleanup: %w", err)
	}
	return n, nil
}
