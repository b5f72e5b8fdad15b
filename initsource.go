// Package flint holds what Flint's separately built binaries must agree on:
// the identity of the process sandbox init's source (InitSource).
package flint

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"strings"
	"sync"
)

// The init's whole source: its protocol and everything it does before the
// runtime's execve (package privdrop drops its privileges).
//
//go:embed internal/sandbox/process/nsinit/*.go internal/privdrop/*.go
var initSource embed.FS

var initSourceID = sync.OnceValue(func() string {
	h := sha256.New()
	// WalkDir visits in lexical order: the same files give the same sum.
	fs.WalkDir(initSource, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := initSource.ReadFile(path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write([]byte{0})
		h.Write(b)
		h.Write([]byte{0})
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
})

// InitSource identifies the source code of the process driver's sandbox
// init (packages nsinit and privdrop, tests aside), as a hex SHA-256. The
// server re-executing itself and a separately built
// cmd/flint-sandbox-init run the same init, speaking the same private
// protocol with the driver, exactly when their InitSource values are equal
// (the server checks before it uses one: see internal/server).
func InitSource() string { return initSourceID() }
