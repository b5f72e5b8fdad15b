// Command initbin is a minimal sandbox init for the process driver: set
// process.Config.InitPath to this binary (e.g. installed as
// /usr/lib/flint/sandbox-init) to start sandboxes faster than by
// re-executing the whole Flint binary, whose package initialisers (AWS SDK,
// NATS server...) would all run in every sandbox's init. It links only
// package nsinit and must be built from the same source as the driver (the
// two speak a private protocol).
package main

import (
	"fmt"
	"os"

	"github.com/flintdev/flint/internal/sandbox/process/nsinit"
)

func main() {
	nsinit.MaybeRun()
	fmt.Fprintln(os.Stderr, "flint sandbox init: started by hand; only the process sandbox driver runs this")
	os.Exit(2)
}
