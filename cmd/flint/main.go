// Command flint is Flint's single binary: the all-in-one server
// (`flint server`) and a small client for the common loop (deploy, invoke,
// logs, list, delete).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/flintdev/flint/internal/cli"
	"github.com/flintdev/flint/internal/sandbox/process"
	"github.com/flintdev/flint/internal/vm/jail"
)

func main() {
	// When this binary was started as a sandbox's init, it runs the init
	// and never returns.
	process.MaybeRunInit()
	// When started as the microVM driver's VMM jail helper, it sets up the
	// jail and executes QEMU.
	jail.MaybeRun()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
