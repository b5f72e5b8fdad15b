package initramfs

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// member is one entry read back from an archive.
type member struct {
	mode uint32
	data string
}

// readNewc parses a newc archive as the kernel does, checking the
// alignment and order rules Builder must keep.
func readNewc(t *testing.T, b []byte) (map[string]member, []string) {
	t.Helper()
	files := map[string]member{}
	var order []string
	off := 0
	field := func(i int) int {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header at %d: %v", off, err)
		}
		return int(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off%4 != 0 || off+headerSize > len(b) || string(b[off:off+6]) != magic {
			t.Fatalf("no header at %d", off)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(b[off+headerSize : off+headerSize+namesize-1])
		data := align(off + headerSize + namesize)
		if name == trailer {
			if align(data) != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-data)
			}
			return files, order
		}
		if d := filepath.Dir(name); d != "." {
			if _, ok := files[d]; !ok {
				t.Errorf("%s comes before its directory %s", name, d)
			}
		}
		files[name] = member{mode: uint32(mode), data: string(b[data : data+size])}
		order = append(order, name)
		off = align(data + size)
	}
}

func TestArchive(t *testing.T) {
	b := New()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Bytes("/etc/flint/plan.json", []byte("{}"), 0o644))
	must(b.Dir("/tmp", 0o1777))
	must(b.Symlink("/sbin/init", "/init"))
	host := filepath.Join(t.TempDir(), "x")
	must(os.WriteFile(host, []byte("odd-sized"), 0o755))
	must(b.File("/init", host, 0o755))
	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	files, _ := readNewc(t, buf.Bytes())
	for name, want := range map[string]member{
		"etc":                 {modeDir | 0o755, ""},
		"etc/flint/plan.json": {modeRegular | 0o644, "{}"},
		"sbin/init":           {modeSymlink | 0o777, "/init"},
		"init":                {modeRegular | 0o755, "odd-sized"},
		"tmp":                 {modeDir | 0o777, ""}, // perm bits only; the sticky bit is the init's business
	} {
		if got := files[name]; got != want {
			t.Errorf("%s = %+v, want %+v", name, got, want)
		}
	}
}

func TestRejects(t *testing.T) {
	b := New()
	if err := b.Bytes("/a", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"file under a file": b.Bytes("/a/b", nil, 0o644),
		"dir over a file":   b.Dir("/a", 0o755),
		"relative":          b.Dir("rel", 0o755),
		"root":              b.Dir("/", 0o755),
		"missing host file": b.AddHostPath("/nonexistent/file"),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestHostProgram: a host program comes with the links on its way (Debian:
// /bin -> usr/bin, sh -> dash), its interpreter and its libraries.
func TestHostProgram(t *testing.T) {
	b := New()
	if err := b.AddHostProgram("/bin/sh"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	files, order := readNewc(t, buf.Bytes())
	real, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	if got := files[strings.TrimPrefix(real, "/")]; got.data != string(host) || got.mode&0o170000 != modeRegular {
		t.Errorf("%s not copied (mode %o, %d bytes)", real, got.mode, len(got.data))
	}
	var libc, ld bool
	for _, name := range order {
		libc = libc || strings.HasSuffix(name, "/libc.so.6")
		ld = ld || strings.Contains(name, "ld-linux")
	}
	if !libc || !ld {
		t.Errorf("libc (%v) or the interpreter (%v) missing from %v", libc, ld, order)
	}
	if fi, err := os.Lstat("/bin"); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if files["bin"].mode&0o170000 != modeSymlink {
			t.Errorf("/bin is a link on the host, not in the archive: %+v", files["bin"])
		}
	}
}
