package flint

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"testing"
)

// TestInitSourceCoversTheInit: InitSource hashes every package of this
// module the sandbox init links, so an init built from other sources
// never passes for the server's own. A new in-module import of nsinit or
// privdrop must join the go:embed patterns.
func TestInitSourceCoversTheInit(t *testing.T) {
	const module = "github.com/flintdev/flint/"
	covered := map[string]bool{}
	imports := map[string]string{} // in-module import path -> a file importing it
	var files int
	fs.WalkDir(initSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") {
			return err
		}
		covered[module+path.Dir(p)] = true
		files++
		b, err := initSource.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, b, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(ip, module) {
				imports[ip] = p
			}
		}
		return nil
	})
	for ip, p := range imports {
		if !covered[ip] {
			t.Errorf("%s imports %s, which InitSource does not cover", p, ip)
		}
	}
	for _, pkg := range []string{"internal/sandbox/process/nsinit", "internal/privdrop"} {
		if !covered[module+pkg] {
			t.Errorf("InitSource does not cover %s", pkg)
		}
	}
	if files < 5 || len(InitSource()) != 64 {
		t.Errorf("InitSource over %d files = %q", files, InitSource())
	}
}
