package bench

import (
	"archive/zip"
	"bytes"
	"context"
	_ "embed" // the bench function's source
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// fnSource is the bench function (package benchfn, built here as its own
// little module so the bench works outside this repository too).
//
//go:embed benchfn/main.go
var fnSource []byte

const fnGoMod = `module flintbenchfn

go 1.22

require github.com/aws/aws-lambda-go v1.55.1
`

const fnGoSum = `github.com/aws/aws-lambda-go v1.55.1 h1:We2cCp4BwqqH/JW+bEEo1FhgG71rslvjfi4y7KmlrR0=
github.com/aws/aws-lambda-go v1.55.1/go.mod h1:V+NzkHNR6vBC8C1PDloqSLE+7jYWFiPvJJFiCiTm8nE=
`

// buildFunction builds the bench function's bootstrap into dir (cached:
// an existing one is reused) and returns its path.
func buildFunction(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "bootstrap")
	src := filepath.Join(dir, "src")
	if old, err := os.ReadFile(filepath.Join(src, "main.go")); err == nil && bytes.Equal(old, fnSource) {
		if _, err := os.Stat(out); err == nil {
			return out, nil
		}
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	for name, data := range map[string][]byte{"main.go": fnSource, "go.mod": []byte(fnGoMod), "go.sum": []byte(fnGoSum)} {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			return "", err
		}
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out+".tmp", ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build bench function: %w\n%s", err, b)
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return "", err
	}
	return out, nil
}

// zipBootstrap zips the file at path as an executable "bootstrap".
func zipBootstrap(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
