// Command flint-sandbox-init is a minimal sandbox init for the process
// driver: `flint server --sandbox-init PATH` (process.Config.InitPath) makes
// the driver start it in each new sandbox instead of re-executing the whole
// Flint binary, which is faster than
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
