package codestore

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// sandboxDirs gives a base dir holding only parent/, and the target
// parent/pkg (not created). Escapes would land in parent/ or base/.
func sandboxDirs(t *testing.T) (base, dir string) {
	t.Helper()
	base = t.TempDir()
	if err := os.Mkdir(filepath.Join(base, "parent"), 0o755); err != nil {
		t.Fatal(err)
	}
	return base, filepath.Join(base, "parent", "pkg")
}

func TestExtractRejects(t *testing.T) {
	base0 := t.TempDir() // an absolute path for the absolute-name case
	good := buildZip(t, file("a.txt", "hello world hello world hello world"))
	content := []byte("hello world hello world hello world")
	flipped := buildRawZip(t, rawEntry{name: "a.txt", method: zip.Store, body: content, claimedSize: uint64(len(content)), claimedCRC32: crc(content)})
	i := bytes.Index(flipped, content) + 3
	flipped[i] ^= 0xff

	bigZeros := make([]byte, 2<<20)
	small := Limits{MaxZipBytes: 1 << 20, MaxUnzippedBytes: 64 << 10, MaxFiles: 3}

	cases := []struct {
		name    string
		zip     []byte
		lim     Limits
		typ     string
		message string // substring of the Lambda-visible message, when checked
	}{
		{"not a zip", []byte("this is not a zip file at all"), Limits{}, lambdaerr.InvalidParameterValue, "Could not unzip uploaded file"},
		{"empty", nil, Limits{}, lambdaerr.InvalidParameterValue, "Could not unzip uploaded file"},
		{"truncated", good[:len(good)/2], Limits{}, lambdaerr.InvalidParameterValue, "Could not unzip uploaded file"},
		{"corrupt data", flipped, Limits{}, lambdaerr.InvalidParameterValue, "Could not unzip uploaded file"},
		{"oversized zip", good, Limits{MaxZipBytes: int64(len(good) - 1)}, lambdaerr.RequestEntityTooLarge, "smaller than"},
		{"zip slip", buildZip(t, file("ok", "1"), file("../escaped", "pwn")), Limits{}, lambdaerr.InvalidParameterValue, "'..'"},
		{"zip slip deep", buildZip(t, file("../../escaped", "pwn")), Limits{}, lambdaerr.InvalidParameterValue, "'..'"},
		{"zip slip via subdir", buildZip(t, file("a/../../escaped", "pwn")), Limits{}, lambdaerr.InvalidParameterValue, "'..'"},
		{"absolute", buildZip(t, file(filepath.ToSlash(filepath.Join(base0, "abs")), "pwn")), Limits{}, lambdaerr.InvalidParameterValue, "absolute"},
		{"backslash", buildZip(t, file(`..\escaped`, "pwn")), Limits{}, lambdaerr.InvalidParameterValue, "backslash"},
		{"nul", buildZip(t, file("a\x00b", "x")), Limits{}, lambdaerr.InvalidParameterValue, "NUL"},
		{"symlink escapes", buildZip(t, symlink("l", "../outside")), Limits{}, lambdaerr.InvalidParameterValue, "outside the package"},
		{"symlink escapes from subdir", buildZip(t, dirent("d/"), symlink("d/l", "../../x")), Limits{}, lambdaerr.InvalidParameterValue, "outside the package"},
		{"symlink absolute", buildZip(t, symlink("l", "/etc/passwd")), Limits{}, lambdaerr.InvalidParameterValue, "absolute"},
		{"symlink empty", buildZip(t, symlink("l", "")), Limits{}, lambdaerr.InvalidParameterValue, "empty target"},
		{"symlink dotdot through link", buildZip(t, symlink("l", "."), symlink("e", "l/..")), Limits{}, lambdaerr.InvalidParameterValue, "only allowed at the start"},
		{"file through escaping symlink", buildZip(t, symlink("l", "../.."), file("l/escaped", "pwn")), Limits{}, lambdaerr.InvalidParameterValue, ""},
		{"file through inside symlink", buildZip(t, dirent("sub/"), symlink("l", "sub"), file("l/x", "pwn")), Limits{}, lambdaerr.InvalidParameterValue, "goes through the symlink"},
		{"file before symlink it goes through", buildZip(t, file("l/x", "pwn"), symlink("l", "sub")), Limits{}, lambdaerr.InvalidParameterValue, "goes through the symlink"},
		{"file under file", buildZip(t, file("a", "1"), file("a/b", "2")), Limits{}, lambdaerr.InvalidParameterValue, "which is a file"},
		{"duplicate", buildZip(t, file("a", "1"), file("a", "2")), Limits{}, lambdaerr.InvalidParameterValue, "more than one entry"},
		{"duplicate after clean", buildZip(t, file("a", "1"), file("./a", "2")), Limits{}, lambdaerr.InvalidParameterValue, "more than one entry"},
		{"file and dir same name", buildZip(t, file("a", "1"), dirent("a/")), Limits{}, lambdaerr.InvalidParameterValue, "more than one entry"},
		{"device", buildZip(t, withMode("dev", fs.ModeDevice|0o644)), Limits{}, lambdaerr.InvalidParameterValue, "special file"},
		{"char device", buildZip(t, withMode("tty", fs.ModeDevice|fs.ModeCharDevice|0o644)), Limits{}, lambdaerr.InvalidParameterValue, "special file"},
		{"fifo", buildZip(t, withMode("fifo", fs.ModeNamedPipe|0o644)), Limits{}, lambdaerr.InvalidParameterValue, "special file"},
		{"socket", buildZip(t, withMode("sock", fs.ModeSocket|0o644)), Limits{}, lambdaerr.InvalidParameterValue, "special file"},
		{"too many files", buildZip(t, file("1", ""), file("2", ""), file("3", ""), file("4", "")), small, lambdaerr.InvalidParameterValue, "at most 3"},
		{"honest bomb", buildZip(t, file("zeros", string(bigZeros))), small, lambdaerr.InvalidParameterValue, "Unzipped size must be smaller than 65536"},
		{"lying stored entry", buildRawZip(t, rawEntry{
			name: "liar", method: zip.Store, body: bigZeros[:200<<10], claimedSize: 10, claimedCRC32: crc(bigZeros[:10]),
		}), small, lambdaerr.InvalidParameterValue, ""},
		{"lying deflate bomb", buildRawZip(t, rawEntry{
			name: "bomb", method: zip.Deflate, body: deflate(t, make([]byte, 10<<20)), claimedSize: 100, claimedCRC32: crc(make([]byte, 100)),
		}), small, lambdaerr.InvalidParameterValue, ""},
		{"files over the limit together", buildRawZip(t,
			rawEntry{name: "b1", method: zip.Deflate, body: deflate(t, bigZeros[:40<<10]), claimedSize: 40 << 10, claimedCRC32: crc(bigZeros[:40<<10])},
			rawEntry{name: "b2", method: zip.Deflate, body: deflate(t, bigZeros[:40<<10]), claimedSize: 40 << 10, claimedCRC32: crc(bigZeros[:40<<10])},
		), small, lambdaerr.InvalidParameterValue, "Unzipped size"},
		{"unsupported method", buildRawZip(t, rawEntry{name: "m", method: 99, body: []byte("xx"), claimedSize: 2, claimedCRC32: crc([]byte("xx"))}), Limits{}, lambdaerr.InvalidParameterValue, "compression method"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base, dir := sandboxDirs(t)
			err := Extract(tc.zip, dir, tc.lim)
			if !lambdaerr.Is(err, tc.typ) {
				t.Fatalf("Extract: got %v, want a %s", err, tc.typ)
			}
			if tc.message != "" && !strings.Contains(lambdaerr.As(err).Message, tc.message) {
				t.Errorf("message %q does not mention %q", lambdaerr.As(err).Message, tc.message)
			}
			if got := listTree(t, base); !reflect.DeepEqual(got, []string{"parent"}) {
				t.Errorf("after a failed Extract the tree is %q, want only the empty parent", got)
			}
			if _, err := os.Lstat(filepath.Join(base0, "abs")); err == nil {
				t.Errorf("absolute entry was written")
			}
			if err := Validate(tc.zip, tc.lim); !lambdaerr.Is(err, tc.typ) {
				t.Errorf("Validate: got %v, want a %s", err, tc.typ)
			}
		})
	}
}

func TestExtractEncrypted(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "secret", Method: zip.Store, Flags: flagEncrypted, CompressedSize64: 4, UncompressedSize64: 4, CRC32: crc([]byte("abcd"))}
	w, err := zw.CreateRaw(h)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abcd"))
	zw.Close()
	base, dir := sandboxDirs(t)
	if err := Extract(buf.Bytes(), dir, Limits{}); !lambdaerr.Is(err, lambdaerr.InvalidParameterValue) || !strings.Contains(err.Error(), "encrypted") {
		t.Fatalf("got %v, want an InvalidParameterValue about encryption", err)
	}
	if got := listTree(t, base); !reflect.DeepEqual(got, []string{"parent"}) {
		t.Errorf("tree %q", got)
	}
}

// goodZip has the shapes a real Lambda package has: an executable
// bootstrap, nested dirs (declared and implied), in-package symlinks and
// modes that must be tamed.
func goodZip(t testing.TB) []byte {
	return buildZip(t,
		exe("bootstrap", "#!/bin/sh\necho hi\n"),
		dirent("lib/"),
		file("lib/a.txt", "alpha"),
		file("deep/er/b.txt", "beta"), // parents implied
		withMode("setuid", fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky|0o777),
		withMode("groupwrite", 0o666),
		dirent("empty/"),
		symlink("lib/link", "a.txt"),
		symlink("top", "lib/a.txt"),
		symlink("lib/up", "../bootstrap"),
		symlink("libdir", "./lib/"),
	)
}

// checkGoodTree verifies what goodZip extracts to.
func checkGoodTree(t *testing.T, dir string) {
	t.Helper()
	want := []string{"bootstrap", "deep", "deep/er", "deep/er/b.txt", "empty", "groupwrite", "lib", "lib/a.txt", "lib/link", "lib/up", "libdir", "setuid", "top"}
	if got := listTree(t, dir); !reflect.DeepEqual(got, want) {
		t.Fatalf("tree\n got %q\nwant %q", got, want)
	}
	modes := map[string]fs.FileMode{
		".":          fs.ModeDir | 0o755,
		"bootstrap":  0o755,
		"lib":        fs.ModeDir | 0o755,
		"lib/a.txt":  0o644,
		"deep":       fs.ModeDir | 0o755,
		"deep/er":    fs.ModeDir | 0o755,
		"setuid":     0o755,
		"groupwrite": 0o644,
		"empty":      fs.ModeDir | 0o755,
	}
	for name, want := range modes {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
	links := map[string]string{"lib/link": "a.txt", "top": "lib/a.txt", "lib/up": "../bootstrap", "libdir": "./lib/"}
	for name, target := range links {
		got, err := os.Readlink(filepath.Join(dir, name))
		if err != nil || got != target {
			t.Errorf("%s: readlink %q, %v; want %q", name, got, err, target)
		}
	}
	for name, content := range map[string]string{"top": "alpha", "lib/link": "alpha", "deep/er/b.txt": "beta", "lib/up": "#!/bin/sh\necho hi\n", "libdir/a.txt": "alpha"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != content {
			t.Errorf("%s: read %q, %v; want %q", name, b, err, content)
		}
	}
}

func TestExtractGood(t *testing.T) {
	z := goodZip(t)
	if err := Validate(z, Limits{}); err != nil {
		t.Fatal(err)
	}
	base, dir := sandboxDirs(t)
	if err := Extract(z, dir, Limits{}); err != nil {
		t.Fatal(err)
	}
	checkGoodTree(t, dir)
	if got := listTree(t, filepath.Join(base, "parent")); len(got) == 0 || got[0] != "pkg" || strings.Contains(strings.Join(got, " "), tempPrefixPattern) {
		t.Errorf("parent holds %q; want only pkg (no temp dirs)", got)
	}
	// A second Extract into the same dir reports that it exists and
	// leaves no temp behind.
	if err := Extract(z, dir, Limits{}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Extract: %v, want fs.ErrExist", err)
	}
	entries, err := os.ReadDir(filepath.Join(base, "parent"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("parent has %d entries (%v), want 1", len(entries), err)
	}
}

func TestExtractEmptyZip(t *testing.T) {
	_, dir := sandboxDirs(t)
	if err := Extract(buildZip(t), dir, Limits{}); err != nil {
		t.Fatal(err)
	}
	if got := listTree(t, dir); len(got) != 0 {
		t.Fatalf("empty zip extracted to %q", got)
	}
}

// TestCopyLimitedCountsActualBytes checks the running count on its own,
// whatever a header says: a source bigger than the budget is cut at
// budget+1 bytes and reported.
func TestCopyLimitedCountsActualBytes(t *testing.T) {
	var sink bytes.Buffer
	n, readErr, writeErr := copyLimited(&sink, io.LimitReader(zeroReader{}, 10<<20), 1000)
	if !errors.Is(readErr, errBudget) || writeErr != nil {
		t.Fatalf("got %v, %v; want errBudget", readErr, writeErr)
	}
	if n != 1001 || sink.Len() != 1001 {
		t.Fatalf("copied %d (sink %d), want exactly budget+1", n, sink.Len())
	}
	sink.Reset()
	n, readErr, writeErr = copyLimited(&sink, strings.NewReader(strings.Repeat("x", 1000)), 1000)
	if readErr != nil || writeErr != nil || n != 1000 {
		t.Fatalf("exactly the budget: %d, %v, %v", n, readErr, writeErr)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestCheckTarget(t *testing.T) {
	ok := []struct{ link, target string }{
		{"a", "b"}, {"a", "."}, {"d/a", ".."}, {"d/a", "../b"}, {"d/e/a", "../../b/c"}, {"a", "./b/./c/"},
	}
	for _, c := range ok {
		if err := checkTarget(c.link, c.target); err != nil {
			t.Errorf("%s -> %s: %v", c.link, c.target, err)
		}
	}
	bad := []struct{ link, target string }{
		{"a", ".."}, {"d/a", "../.."}, {"a", "/b"}, {"a", "b/../c"}, {"a", "b/.."}, {"a", ""}, {"a", `..\b`}, {"a", "b\x00"},
	}
	for _, c := range bad {
		if err := checkTarget(c.link, c.target); !lambdaerr.Is(err, lambdaerr.InvalidParameterValue) {
			t.Errorf("%s -> %q: got %v, want rejection", c.link, c.target, err)
		}
	}
}

func TestRemoveTemps(t *testing.T) {
	parent := t.TempDir()
	for _, d := range []string{"keep", ".abc" + tempPrefixPattern + "123/sub", ".other"} {
		if err := os.MkdirAll(filepath.Join(parent, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveTemps(parent); err != nil {
		t.Fatal(err)
	}
	if got := listTree(t, parent); !reflect.DeepEqual(got, []string{".other", "keep"}) {
		t.Fatalf("left %q", got)
	}
	if err := RemoveTemps(filepath.Join(parent, "missing")); err != nil {
		t.Fatal(err)
	}
}
