// Command flint-sandbox-init is the process driver's small sandbox init.
// `flint server` starts it in each new sandbox, instead of re-executing the
// whole Flint binary, when it lies next to the flint binary (as
// `go build -o bin/ ./cmd/flint ./cmd/flint-sandbox-init` or
// `go install ./cmd/...` put it) and was built from the same init source,
// or when --sandbox-init names it. A small static binary starts in a
// fraction of the time the big one takes (no dynamic loader, no C
// library, far fewer pages and interface tables): docs/sandbox-process.md.
//
// It links only package nsinit (and the root package, for
// `flint-sandbox-init --init-source`, which prints flint.InitSource: the
// server asks it before using it, since the two speak a private protocol).
package main

import (
	"os"

	"github.com/flintdev/flint"
	"github.com/flintdev/flint/internal/sandbox/process/nsinit"
)

func main() {
	nsinit.MaybeRun()
	if len(os.Args) == 2 && os.Args[1] == "--init-source" {
		os.Stdout.WriteString(flint.InitSource() + "\n")
		return
	}
	os.Stderr.WriteString("flint sandbox init: started by hand; only the process sandbox driver runs this (or --init-source)\n")
	os.Exit(2)
}
