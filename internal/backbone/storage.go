package backbone

import (
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/unix"
)

// Storage sizing. The embedded server's JetStream limit (max store) is
// sized to what the data dir's disk has, so JetStream itself refuses
// writes, at once and with an error, before the disk is full; the log
// stream's byte limit (which JetStream reserves up front) is a share of it.
// A disk too small for even the minimum fails at start with an error naming
// the flag.
const (
	// MinMaxStore is the least JetStream storage Flint starts with.
	MinMaxStore = 16 << 20
	// minReserve and maxReserve bound the default reserve.
	minReserve = 4 << 20
	maxReserve = 512 << 20
	// DefaultLogBytes is the log stream's limit when the disk has room.
	DefaultLogBytes = 1 << 30
	// MinLogBytes is the smallest log stream limit (a few batches).
	MinLogBytes = 2 << 20
)

// Limits are the storage limits the backbone runs with.
type Limits struct {
	// MaxStore is JetStream's storage limit in bytes (-1: unknown or
	// unlimited, on an external cluster).
	MaxStore int64
	// Reserve is the free space kept on the data dir's disk (0 when
	// external: the servers' disks are not ours to see).
	Reserve int64
}

// Limits returns the storage limits the backbone runs with.
func (b *Backbone) Limits() Limits { return b.limits }

// LogBytes is the byte limit the log stream gets by default: a share of
// the storage limit, at most DefaultLogBytes.
func (l Limits) LogBytes() int64 {
	if l.MaxStore <= 0 {
		return DefaultLogBytes
	}
	return max(MinLogBytes, min(DefaultLogBytes, l.MaxStore/8))
}

// CheckLogBytes reports whether a log stream limit of n bytes fits in the
// storage limit (at most half of it), naming the flag when not.
func (l Limits) CheckLogBytes(n int64) error {
	if n < MinLogBytes {
		return fmt.Errorf("--logs-max-bytes %s is below the minimum of %s", mib(n), mib(MinLogBytes))
	}
	if l.MaxStore > 0 && n > l.MaxStore/2 {
		return fmt.Errorf("--logs-max-bytes %s does not fit: the backbone's storage limit is %s (--nats-max-store), of which logs may take half", mib(n), mib(l.MaxStore))
	}
	return nil
}

// Disk is what the file system holding a directory has.
type Disk struct {
	Total int64 `json:"totalBytes"`
	Free  int64 `json:"freeBytes"` // available to unprivileged writers
}

// UsedFraction is the share of the disk in use.
func (d Disk) UsedFraction() float64 {
	if d.Total <= 0 {
		return 0
	}
	return 1 - float64(d.Free)/float64(d.Total)
}

func statDisk(dir string) (Disk, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Disk{}, err
	}
	return Disk{Total: int64(st.Blocks) * st.Bsize, Free: int64(st.Bavail) * st.Bsize}, nil
}

// dirSize is the bytes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// defaultReserve is 5 % of the disk, within [minReserve, maxReserve].
func defaultReserve(total int64) int64 {
	return max(minReserve, min(maxReserve, total/20))
}

// sizeEmbedded picks the embedded server's limits for storeDir's disk:
// maxStore (0: what JetStream uses now plus three quarters of the free
// space above the reserve) and reserve (0: defaultReserve). It fails,
// naming the flag, when the disk cannot hold MinMaxStore or an explicit
// maxStore.
func sizeEmbedded(storeDir string, maxStore, reserve int64) (Limits, error) {
	d, err := statDisk(storeDir)
	if err != nil {
		return Limits{}, fmt.Errorf("backbone: data dir disk: %w", err)
	}
	if reserve == 0 {
		reserve = defaultReserve(d.Total)
	}
	used := dirSize(storeDir)
	room := used + max(0, d.Free-reserve)
	if maxStore == 0 {
		maxStore = used + max(0, d.Free-reserve)*3/4
		if maxStore < MinMaxStore {
			return Limits{}, fmt.Errorf("backbone: the data dir's disk has %s free (%s kept in reserve, --nats-reserve); "+
				"the backbone needs at least %s of storage (--nats-max-store): free space or choose a larger --data",
				mib(d.Free), mib(reserve), mib(MinMaxStore))
		}
	} else {
		if maxStore < MinMaxStore {
			return Limits{}, fmt.Errorf("backbone: --nats-max-store %s is below the minimum of %s", mib(maxStore), mib(MinMaxStore))
		}
		if maxStore > room {
			return Limits{}, fmt.Errorf("backbone: --nats-max-store %s does not fit: the data dir's disk has room for %s "+
				"(%s free, %s kept in reserve, --nats-reserve)", mib(maxStore), mib(room), mib(d.Free), mib(reserve))
		}
	}
	return Limits{MaxStore: maxStore, Reserve: reserve}, nil
}

// externalLimits reads the account's storage limit from an external
// cluster (-1 when unlimited).
func externalLimits(info *jetstream.AccountInfo) Limits {
	l := Limits{MaxStore: -1}
	if info != nil && info.Limits.MaxStore > 0 {
		l.MaxStore = info.Limits.MaxStore
	}
	return l
}

// mib formats bytes for messages.
func mib(n int64) string {
	if n >= 10<<20 || n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
