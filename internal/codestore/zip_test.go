package codestore

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// zent describes one entry of a zip built by a test.
type zent struct {
	name string
	mode fs.FileMode // 0 means 0644 for files (a trailing "/" makes a dir)
	data string      // file content or symlink target
}

func file(name, data string) zent { return zent{name: name, data: data} }
func exe(name, data string) zent  { return zent{name: name, mode: 0o755, data: data} }
func dirent(name string) zent     { return zent{name: name, mode: fs.ModeDir | 0o755} }
func symlink(name, target string) zent {
	return zent{name: name, mode: fs.ModeSymlink | 0o777, data: target}
}
func withMode(name string, m fs.FileMode) zent { return zent{name: name, mode: m, data: "x"} }

// buildZip writes entries with archive/zip, deflating files.
func buildZip(t testing.TB, ents ...zent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		m := e.mode
		if m == 0 {
			m = 0o644
		}
		h.SetMode(m)
		if m.IsDir() {
			h.Method = zip.Store
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawEntry is an entry whose header sizes and CRC are given as-is: a
// liar's zip.
type rawEntry struct {
	name         string
	method       uint16
	body         []byte // already compressed
	claimedSize  uint64
	claimedCRC32 uint32
}

func buildRawZip(t testing.TB, ents ...rawEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		h := &zip.FileHeader{
			Name:               e.name,
			Method:             e.method,
			CompressedSize64:   uint64(len(e.body)),
			UncompressedSize64: e.claimedSize,
			CRC32:              e.claimedCRC32,
		}
		h.SetMode(0o644)
		w, err := zw.CreateRaw(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func deflate(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	fw, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func crc(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

// listTree returns every path under root (relative, sorted), not following
// symlinks.
func listTree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}
