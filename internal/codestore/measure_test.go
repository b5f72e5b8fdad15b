package codestore

import (
	"strings"
	"testing"
)

func TestMeasureCountsFilesAndLinks(t *testing.T) {
	data := buildZip(t, dirent("d/"), file("d/a", strings.Repeat("x", 1000)), exe("b", "12345"), symlink("l", "d/a"))
	n, err := Measure(data, Limits{})
	if err != nil || n != 1000+5+3 {
		t.Fatalf("Measure = %d, %v; want 1008", n, err)
	}
	if _, err := Measure(data, Limits{MaxUnzippedBytes: 1000}); err == nil {
		t.Fatal("Measure accepted a package over the limit")
	}
}

func TestPutAndUnzippedSize(t *testing.T) {
	ctx, _, s := newTestStore(t)
	data := buildZip(t, file("a", strings.Repeat("y", 4096)))
	pkg, err := s.Put(ctx, data)
	if err != nil || pkg.UnzippedSize != 4096 {
		t.Fatalf("Put = %+v, %v", pkg, err)
	}
	again, err := s.Put(ctx, data) // already stored: same answer
	if err != nil || again != pkg {
		t.Fatalf("second Put = %+v, %v", again, err)
	}
	if n, err := s.UnzippedSize(ctx, pkg.Digest); err != nil || n != 4096 {
		t.Fatalf("UnzippedSize = %d, %v", n, err)
	}
}
