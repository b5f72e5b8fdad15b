package process

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fdSize reads the size of this process's descriptor table (FDSize in
// /proc/self/status).
func fdSize(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "FDSize:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no FDSize in /proc/self/status")
	return 0
}

// TestGrowFDTable: the table is sized at once for n descriptors (at most
// the soft limit), and no descriptor is left open doing it.
func TestGrowFDTable(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	want := min(fdTableSize, int(lim.Cur))
	open := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := open()
	growFDTable(fdTableSize)
	if got := fdSize(t); got < want {
		t.Errorf("descriptor table of %d after growFDTable(%d), want at least %d (RLIMIT_NOFILE %d)", got, fdTableSize, want, lim.Cur)
	}
	if after := open(); after > before {
		t.Errorf("%d descriptors open before, %d after", before, after)
	}
}
